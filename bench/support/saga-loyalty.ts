import type { Executor } from '../../src/db/executor.ts';

/**
 * The business SQL of the saga benchmark, shared by the Baton run and the
 * plain baseline so both write exactly the same rows: an order row in the
 * orchestrator's database; in the loyalty database a hold (try), then the
 * hold deleted, the balance lowered and a movement written (confirm).
 */
export const ORDERS_TABLE =
  'CREATE TABLE orders (id text PRIMARY KEY, customer_id text NOT NULL, points int NOT NULL, state text NOT NULL)';

export { LOYALTY_TABLES } from '../../examples/shop/loyalty-points.ts';

/** Customers, each rich enough never to be refused during a run. */
export const CUSTOMERS = 1000;
export const START_BALANCE = 1_000_000_000;

export function seedAccountsSql(): string {
  return `INSERT INTO accounts SELECT 'c' || g, ${START_BALANCE} FROM generate_series(1, ${CUSTOMERS}) g`;
}

export type { PointsRequest as Points } from '../../examples/shop/loyalty-points.ts';

export async function insertOrder(
  db: Executor,
  order: { id: string; customerId: string; points: number },
): Promise<void> {
  await db.query(`INSERT INTO orders VALUES ($1, $2, $3, 'placed')`, [
    order.id,
    order.customerId,
    order.points,
  ]);
}

// The reservation's business writes are the demo's own (examples/shop/loyalty-points.ts): the
// Baton run serves them as the `points` reservation, the baseline calls them directly.
export { holdPoints, releaseHold, spendHold } from '../../examples/shop/loyalty-points.ts';

/** After a run: every order's points moved exactly once, no hold left. */
export async function checkConsistency(
  orders: Executor,
  loyalty: Executor,
): Promise<{ orders: number; movements: number; holdsLeft: number; consistent: boolean }> {
  const o = await orders.query<{ n: string; points: string }>(
    `SELECT count(*) AS n, coalesce(sum(points), 0) AS points FROM orders WHERE state = 'placed'`,
  );
  const m = await loyalty.query<{ n: string; points: string; holds: string; balance: string }>(
    `SELECT (SELECT count(*) FROM movements WHERE kind = 'spend') AS n,
            (SELECT coalesce(-sum(points), 0) FROM movements WHERE kind = 'spend') AS points,
            (SELECT count(*) FROM holds) AS holds,
            (SELECT ${CUSTOMERS}::bigint * ${START_BALANCE} - sum(balance) FROM accounts) AS balance`,
  );
  const orderCount = Number(o.rows[0]?.n);
  const row = m.rows[0];
  const consistent =
    orderCount === Number(row?.n) &&
    o.rows[0]?.points === row?.points &&
    row?.points === row?.balance &&
    Number(row?.holds) === 0;
  return {
    orders: orderCount,
    movements: Number(row?.n),
    holdsLeft: Number(row?.holds),
    consistent,
  };
}
