import { WELCOME_POINTS } from './config.ts';
import { type ApiRoute, json, problem } from './http-api.ts';
import {
  LOYALTY_TABLES,
  type PointsRequest,
  pointsReservation,
  refundPoints,
} from './loyalty-points.ts';
import type { ServiceBase } from './service-base.ts';

export type { PointsRequest } from './loyalty-points.ts';

/**
 * loyalty: owns accounts and point movements. Accounts (and movements)
 * reference customers with `cascade`: a deleted customer's loyalty data goes.
 * Serves the `points` reservation (try holds points, confirm books the
 * movement, cancel releases the hold) and the idempotent `refund` action.
 * Invariant: no balance below zero (remedy: publish a notification).
 */
export async function declareLoyalty(base: ServiceBase): Promise<{ routes: ApiRoute[] }> {
  const { db, baton } = base;
  await db.query(LOYALTY_TABLES);

  const fromCustomers = base.consumerOf('customers');
  baton.replicate({
    entity: 'customer',
    owner: base.ownerOf('customers'),
    consumer: fromCustomers,
  });
  const accountsRef = baton.reference({
    table: 'accounts',
    column: 'customer_id',
    entity: 'customer',
    onDelete: 'cascade',
  });
  baton.reference({
    table: 'holds',
    column: 'customer_id',
    entity: 'customer',
    onDelete: 'cascade',
  });
  baton.reference({
    table: 'movements',
    column: 'customer_id',
    entity: 'customer',
    onDelete: 'cascade',
  });

  // A new customer gets an account with welcome points (the movement makes the ledger add up).
  fromCustomers.subscribe('customer.registered', async (event, tx) => {
    const { id } = event.payload as { id: string };
    const replica = await tx.query('SELECT state FROM baton.replica_customer WHERE id = $1', [id]);
    if (replica.rows[0] && replica.rows[0].state !== 'ACTIVE') return; // already deleted: no account
    try {
      await accountsRef.check(tx, id);
    } catch {
      return; // unknown or deleted at the owner by now: nothing to open
    }
    const opened = await tx.query('INSERT INTO accounts VALUES ($1, $2) ON CONFLICT DO NOTHING', [
      id,
      WELCOME_POINTS,
    ]);
    if (opened.rowCount === 1) {
      await tx.query(
        "INSERT INTO movements (customer_id, points, kind, reference) VALUES ($1, $2, 'welcome', $3)",
        [id, WELCOME_POINTS, `welcome:${id}`],
      );
    }
  });

  baton.participant.reservation('points', { ...pointsReservation, callers: ['orders'] });

  baton.participant.action<PointsRequest, { refunded: number }>('refund', {
    run: refundPoints,
    callers: ['orders'],
  });

  baton.invariant({
    name: 'balance-not-negative',
    sql: 'SELECT customer_id, balance FROM accounts WHERE balance < 0',
    remedy: {
      publish: (row) => ({
        type: 'loyalty.balance-negative',
        key: `customer:${String(row.customer_id)}`,
        payload: { customerId: row.customer_id, balance: row.balance },
      }),
    },
  });

  const routes: ApiRoute[] = [
    {
      method: 'GET',
      pattern: /^\/accounts\/([^/]+)$/,
      handle: async ({ params }) => {
        const r = await db.query(
          'SELECT customer_id, balance FROM accounts WHERE customer_id = $1',
          [params[0]],
        );
        return r.rows[0] ? json(200, r.rows[0]) : problem(404, `no account for ${params[0]}`);
      },
    },
  ];
  return { routes };
}
