import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LOYALTY_TABLES,
  type PointsRequest as PointsPayload,
  pointsReservation,
} from '../examples/shop/loyalty-points.ts';
import { participantClient, saga, TerminalError } from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import { SECRET } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

describe('sagas: a local step and a points reservation on another service', () => {
  let orders: TestService;
  let loyalty: TestService;
  let worker: SagaWorker;

  beforeAll(async () => {
    orders = await startService('orders');
    loyalty = await startService('loyalty');
    await loyalty.database.db.query(LOYALTY_TABLES);
    await loyalty.database.db.query("INSERT INTO accounts VALUES ('ada', 100), ('bob', 5)");
    loyalty.baton.participant.reservation('points', pointsReservation);
    await orders.database.db.query(
      'CREATE TABLE orders (id text PRIMARY KEY, customer_id text, state text NOT NULL)',
    );
    const points = participantClient({
      name: 'loyalty',
      url: `${loyalty.server.url}/baton`,
      auth: { type: 'hmac', secret: SECRET },
    });
    const placeOrder = saga<
      { orderId: string; customerId: string; points: number },
      { orderId: string }
    >('place-order', async (ctx, input) => {
      await ctx.step(
        'create-order',
        async (tx) => {
          await tx.query("INSERT INTO orders VALUES ($1, $2, 'pending')", [
            input.orderId,
            input.customerId,
          ]);
        },
        {
          compensate: async (tx) =>
            void (await tx.query("UPDATE orders SET state = 'cancelled' WHERE id = $1", [
              input.orderId,
            ])),
        },
      );
      await ctx.reserve<{ held: number }>('spend-points', points, 'points', {
        customerId: input.customerId,
        points: input.points,
      } satisfies PointsPayload);
      await ctx.step('accept-order', async (tx) => {
        if (input.orderId.startsWith('reject'))
          throw new TerminalError('the shop refuses this order');
        await tx.query("UPDATE orders SET state = 'placed' WHERE id = $1", [input.orderId]);
      });
      return { orderId: input.orderId };
    });
    orders.baton.sagas.define(placeOrder);
    worker = orders.baton.sagas.worker({ concurrency: 2, pollIntervalMs: 50 });
    worker.start();
  });
  afterAll(async () => {
    await worker?.stop();
    await orders?.stop();
    await loyalty?.stop();
  });

  const balance = async (customer: string) =>
    (
      await loyalty.database.db.query<{ balance: number }>(
        'SELECT balance FROM accounts WHERE customer_id = $1',
        [customer],
      )
    ).rows[0]?.balance;
  const order = async (id: string) =>
    (
      await orders.database.db.query<{ state: string }>('SELECT state FROM orders WHERE id = $1', [
        id,
      ])
    ).rows[0]?.state;

  it('completes: the order is placed and the points are confirmed', async () => {
    const { id } = await orders.baton.sagas.start('place-order', {
      orderId: 'o1',
      customerId: 'ada',
      points: 30,
    });
    const status = await orders.baton.sagas.waitFor(id);
    expect(status.state).toBe('completed');
    expect(status.output).toEqual({ orderId: 'o1' });
    expect(status.steps.map((s) => `${s.name}:${s.state}`)).toEqual([
      'create-order:completed',
      'spend-points:confirmed',
      'accept-order:completed',
    ]);
    expect(await order('o1')).toBe('placed');
    expect(await balance('ada')).toBe(70);
  });

  it('compensates when the reservation is refused: the order is cancelled, no points move', async () => {
    const { id } = await orders.baton.sagas.start('place-order', {
      orderId: 'o2',
      customerId: 'bob',
      points: 30,
    });
    const status = await orders.baton.sagas.waitFor(id);
    expect(status.state).toBe('compensated');
    expect(status.error).toMatch(/bob has 5 points available, 30 asked/);
    expect(await order('o2')).toBe('cancelled');
    expect(await balance('bob')).toBe(5);
  });

  it('compensates a later failure in reverse: the points reservation is cancelled, then the order', async () => {
    const { id } = await orders.baton.sagas.start('place-order', {
      orderId: 'reject-1',
      customerId: 'ada',
      points: 10,
    });
    const status = await orders.baton.sagas.waitFor(id);
    expect(status.state).toBe('compensated');
    expect(status.steps.map((s) => `${s.name}:${s.state}`)).toEqual([
      'create-order:compensated',
      'spend-points:compensated',
      'accept-order:failed',
    ]);
    expect(await balance('ada')).toBe(70);
    const holds = await loyalty.database.db.query('SELECT * FROM holds');
    expect(holds.rows).toEqual([]);
  });

  it('start is idempotent by id, and refuses the same id with another input', async () => {
    const first = await orders.baton.sagas.start(
      'place-order',
      { orderId: 'o3', customerId: 'ada', points: 1 },
      { id: 'saga-o3' },
    );
    const again = await orders.baton.sagas.start(
      'place-order',
      { orderId: 'o3', customerId: 'ada', points: 1 },
      { id: 'saga-o3' },
    );
    expect(first.created).toBe(true);
    expect(again.created).toBe(false);
    await expect(
      orders.baton.sagas.start(
        'place-order',
        { orderId: 'o3', customerId: 'ada', points: 2 },
        { id: 'saga-o3' },
      ),
    ).rejects.toThrow(/already started/);
    expect((await orders.baton.sagas.waitFor('saga-o3')).state).toBe('completed');
  });
});

describe('the barrier: the disorder timeline, driven step by step', () => {
  let loyalty: TestService;
  beforeAll(async () => {
    loyalty = await startService('loyalty_barrier');
    await loyalty.database.db.query(LOYALTY_TABLES);
    await loyalty.database.db.query("INSERT INTO accounts VALUES ('ada', 100)");
    loyalty.baton.participant.reservation('points', pointsReservation);
  });
  afterAll(async () => {
    await loyalty?.stop();
  });

  it('try held back, cancel sent twice, then the late try is refused; the balance is untouched', async () => {
    const p = loyalty.baton.participant;
    const call = { txId: 'saga-late', branch: 'spend-points' };
    const payload = { customerId: 'ada', points: 40 };
    const cancel1 = await p.reserve('points', 'cancel', call, payload);
    const cancel2 = await p.reserve('points', 'cancel', call, payload);
    const lateTry = await p.reserve('points', 'try', call, payload);
    expect(JSON.parse(cancel1.body)).toMatchObject({ outcome: 'null-compensation' });
    expect(JSON.parse(cancel2.body)).toMatchObject({ outcome: 'duplicate' });
    expect(lateTry.status).toBe(409);
    expect(JSON.parse(lateTry.body).error.code).toBe('BATON_CANCELLED_BEFORE_TRY');
    const account = await loyalty.database.db.query('SELECT balance FROM accounts');
    expect(account.rows).toEqual([{ balance: 100 }]);
    expect((await loyalty.database.db.query('SELECT * FROM holds')).rows).toEqual([]);
  });

  it('duplicates of try, confirm and cancel have no effect', async () => {
    const p = loyalty.baton.participant;
    const call = { txId: 'saga-dup', branch: 'spend-points' };
    const payload = { customerId: 'ada', points: 10 };
    expect((await p.reserve('points', 'try', call, payload)).status).toBe(200);
    expect(JSON.parse((await p.reserve('points', 'try', call, payload)).body)).toMatchObject({
      outcome: 'duplicate',
      result: { held: 10 },
    });
    await p.reserve('points', 'confirm', call, payload);
    await p.reserve('points', 'confirm', call, payload);
    expect(JSON.parse((await p.reserve('points', 'cancel', call, payload)).body)).toMatchObject({
      outcome: 'done',
    });
    const account = await loyalty.database.db.query('SELECT balance FROM accounts');
    expect(account.rows).toEqual([{ balance: 90 }]);
  });

  it('prunes barrier rows only past the retention', async () => {
    const p = loyalty.baton.participant;
    const before = await loyalty.database.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM baton.barrier',
    );
    expect(before.rows[0]?.n).toBeGreaterThan(0);
    expect((await p.prune(3_600_000)).barrier).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await p.prune(10)).barrier).toBe(before.rows[0]?.n);
    await expect(p.prune(0)).rejects.toThrow(/retentionMs/);
  });
});
