import { ReferenceViolation, saga, TerminalError } from '../../src/index.ts';
import type { SagaWorker } from '../../src/sagas/saga-worker.ts';
import { type ApiRoute, int, json, problem, text } from './http-api.ts';
import type { PointsRequest } from './loyalty-service.ts';
import type { ServiceBase } from './service-base.ts';

interface PlaceOrder {
  orderId: string;
  customerId: string;
  points: number;
}

/**
 * orders: owns orders. `orders.customer_id` references customers with
 * `keep`: a deleted customer's orders stay, with a snapshot of the name and
 * address. Placing an order is the `place-order` saga (create the order,
 * spend loyalty points through a reservation, accept); cancelling one is the
 * `cancel-order` saga (refund the points through an idempotent action).
 * Sagas of one customer run one at a time.
 */
export async function declareOrders(
  base: ServiceBase,
): Promise<{ routes: ApiRoute[]; start: () => Promise<void>; stop: () => Promise<void> }> {
  const { db, baton } = base;
  await db.query(`CREATE TABLE IF NOT EXISTS orders (
    id text PRIMARY KEY, customer_id text, customer_name text, customer_address text,
    points int NOT NULL, state text NOT NULL CHECK (state IN ('pending', 'placed', 'rejected', 'cancelled')),
    reason text, created_at timestamptz NOT NULL DEFAULT now())`);
  const fromCustomers = base.consumerOf('customers');
  baton.replicate({
    entity: 'customer',
    owner: base.ownerOf('customers'),
    consumer: fromCustomers,
  });
  const customerRef = baton.reference({
    table: 'orders',
    column: 'customer_id',
    entity: 'customer',
    onDelete: 'keep',
    snapshotColumns: { name: 'customer_name', address: 'customer_address' },
  });
  const loyalty = base.participant('loyalty');

  const placeOrder = saga<PlaceOrder, { orderId: string; state: string }>(
    'place-order',
    async (ctx, order) => {
      await ctx.step(
        'create-order',
        async (tx) => {
          try {
            await customerRef.check(tx, order.customerId);
          } catch (error) {
            if (error instanceof ReferenceViolation) throw new TerminalError(error.message);
            throw error;
          }
          await tx.query(
            "INSERT INTO orders (id, customer_id, points, state) VALUES ($1, $2, $3, 'pending') ON CONFLICT DO NOTHING",
            [order.orderId, order.customerId, order.points],
          );
        },
        {
          compensate: async (tx) => {
            await tx.query(
              "UPDATE orders SET state = 'rejected' WHERE id = $1 AND state = 'pending'",
              [order.orderId],
            );
          },
        },
      );
      if (order.points > 0) {
        await ctx.reserve(
          'spend-points',
          loyalty,
          'points',
          {
            customerId: order.customerId,
            points: order.points,
            orderId: order.orderId,
          } satisfies PointsRequest,
          {
            retry: { attempts: 5, backoff: { baseMs: 100, maxMs: 1_000 }, timeoutMs: 5_000 },
          },
        );
      }
      await ctx.step('accept-order', async (tx) => {
        await tx.query("UPDATE orders SET state = 'placed' WHERE id = $1 AND state = 'pending'", [
          order.orderId,
        ]);
      });
      return { orderId: order.orderId, state: 'placed' };
    },
  );

  const cancelOrder = saga<{ orderId: string }, { orderId: string; refunded: number }>(
    'cancel-order',
    async (ctx, input) => {
      const order = await ctx.step(
        'mark-cancelled',
        async (tx) => {
          const r = await tx.query<{ customer_id: string; points: number }>(
            "UPDATE orders SET state = 'cancelled' WHERE id = $1 AND state = 'placed' RETURNING customer_id, points",
            [input.orderId],
          );
          if (!r.rows[0])
            throw new TerminalError(`order ${input.orderId} is not placed: nothing to cancel`);
          return { customerId: r.rows[0].customer_id, points: r.rows[0].points };
        },
        {
          // If the refund is refused for good, the order is placed again: never cancelled without its refund.
          compensate: async (tx) => {
            await tx.query(
              "UPDATE orders SET state = 'placed' WHERE id = $1 AND state = 'cancelled'",
              [input.orderId],
            );
          },
        },
      );
      // A refund must get through: retried well past any fault the network or a restart can cause.
      const refund =
        order.points > 0
          ? await ctx.call(
              'refund-points',
              (key) =>
                loyalty.call<{ refunded: number }>(
                  'refund',
                  { ...order, orderId: input.orderId },
                  key,
                ),
              { retry: { attempts: 30, backoff: { baseMs: 200, maxMs: 5_000 }, timeoutMs: 5_000 } },
            )
          : { refunded: 0 };
      return { orderId: input.orderId, refunded: refund.refunded };
    },
  );

  baton.sagas.define(placeOrder, cancelOrder);
  let worker: SagaWorker | undefined;

  const routes: ApiRoute[] = [
    {
      // Place (idempotent by the order id, which is also the saga id).
      method: 'POST',
      pattern: /^\/orders$/,
      handle: async ({ body }) => {
        const orderId = text(body, 'id', 100);
        const customerId = text(body, 'customerId', 100);
        const points = int(body, 'points', 0, 1_000_000);
        if (!orderId || !customerId || points === undefined)
          return problem(400, 'send { id, customerId, points } (points: integer 0..1000000)');
        const started = await baton.sagas.start(
          'place-order',
          { orderId, customerId, points },
          { id: `place:${orderId}`, key: customerId },
        );
        return json(202, { id: orderId, saga: started.id, created: started.created });
      },
    },
    {
      method: 'POST',
      pattern: /^\/orders\/([^/]+)\/cancel$/,
      handle: async ({ params }) => {
        const orderId = params[0] as string;
        // The order's customer: from the order, or — while its place saga has not created it
        // yet — from that saga's key. The cancel saga runs under the same key, after the place saga.
        const r = await db.query<{ customer_id: string | null }>(
          `SELECT customer_id FROM orders WHERE id = $1
           UNION ALL SELECT key FROM baton.sagas WHERE id = 'place:' || $1 LIMIT 1`,
          [orderId],
        );
        if (!r.rows[0]) return problem(404, `no order ${orderId}`);
        const started = await baton.sagas.start(
          'cancel-order',
          { orderId },
          { id: `cancel:${orderId}`, key: r.rows[0].customer_id ?? orderId },
        );
        return json(202, { id: orderId, saga: started.id, created: started.created });
      },
    },
    {
      method: 'GET',
      pattern: /^\/orders\/([^/]+)$/,
      handle: async ({ params }) => {
        const r = await db.query(
          'SELECT id, customer_id, customer_name, customer_address, points, state FROM orders WHERE id = $1',
          [params[0]],
        );
        const place = await db.query('SELECT state, error FROM baton.sagas WHERE id = $1', [
          `place:${params[0]}`,
        ]);
        if (!r.rows[0] && !place.rows[0]) return problem(404, `no order ${params[0]}`);
        return json(200, {
          ...(r.rows[0] ?? { id: params[0], state: 'unknown' }),
          saga: place.rows[0] ?? null,
        });
      },
    },
  ];
  return {
    routes,
    start: async () => {
      worker = baton.sagas.worker({
        concurrency: 8,
        pollIntervalMs: 100,
        leaseMs: base.config.leaseMs ?? 10_000,
        id: base.config.instance,
      });
      worker.start();
    },
    stop: async () => {
      await worker?.stop();
    },
  };
}
