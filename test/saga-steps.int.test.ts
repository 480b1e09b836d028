import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LOYALTY_TABLES,
  type PointsRequest as PointsPayload,
  pointsReservation,
} from '../examples/shop/loyalty-points.ts';
import {
  type Baton,
  commandReply,
  createBaton,
  type Executor,
  participantClient,
  RetryableError,
  saga,
  TerminalError,
} from '../src/index.ts';
import { PgDatabase } from '../src/pg.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import { startSagaProxy } from './fixtures/saga-proxy.ts';
import { eventually, SECRET } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/**
 * Each kind of step on the real path: durable timers across a worker
 * restart, commands through the outbox answered by a participant's reply
 * event, reply timeouts, saga deadlines, compensations that never succeed,
 * idempotent remote actions, a local step that overruns its timeout, and the
 * barrier's disorder timeline driven through a saga over real HTTP.
 */
const EFFECTS = `CREATE TABLE effects (
  saga_id text NOT NULL, step text NOT NULL, kind text NOT NULL, n int NOT NULL DEFAULT 1,
  at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (saga_id, step, kind))`;

/** Counts an effect; a second application shows as n = 2 rather than failing. */
function effect(tx: Executor, sagaId: string, step: string, kind = 'do') {
  return tx.query(
    `INSERT INTO effects (saga_id, step, kind) VALUES ($1, $2, $3)
     ON CONFLICT (saga_id, step, kind) DO UPDATE SET n = effects.n + 1`,
    [sagaId, step, kind],
  );
}

const FAST = { baseMs: 20, maxMs: 50 };

/** Attempts per saga, kept outside the saga function (which re-runs from the top on every resume). */
const attempts = new Map<string, number>();
function countAttempt(sagaId: string): number {
  const n = (attempts.get(sagaId) ?? 0) + 1;
  attempts.set(sagaId, n);
  return n;
}

describe('saga step kinds', () => {
  let orders: TestService;
  let loyalty: TestService;
  let worker: SagaWorker;

  beforeAll(async () => {
    orders = await startService('steps_orders');
    loyalty = await startService('steps_loyalty');
    await orders.database.db.query(EFFECTS);
    await loyalty.database.db.query(EFFECTS);
    await loyalty.database.db.query(LOYALTY_TABLES);
    await loyalty.database.db.query("INSERT INTO accounts VALUES ('ada', 100), ('eve', 100)");
    loyalty.baton.participant.reservation('points', pointsReservation);
    loyalty.baton.participant.action('grant', {
      run: async (tx, body: { sagaId: string }, { idempotencyKey }) => {
        await effect(tx, body.sagaId, 'grant');
        return { granted: idempotencyKey };
      },
    });
    // Commands: loyalty consumes orders' feed and answers with a reply event…
    loyalty
      .consumerOf(orders)
      .subscribe('points.award', async (event, tx) => {
        const p = event.payload as { sagaId: string; points: number };
        await effect(tx, p.sagaId, 'award');
        await loyalty.baton.publish(
          tx,
          commandReply(event, { type: 'points.awarded', ok: true, result: { awarded: p.points } }),
        );
      })
      .subscribe('points.refuse', async (event, tx) => {
        await loyalty.baton.publish(
          tx,
          commandReply(event, { type: 'points.awarded', ok: false, error: 'no such customer' }),
        );
      });
    // …which orders consumes with the sagas' reply handler.
    orders.consumerOf(loyalty).subscribe('points.awarded', orders.baton.sagas.replyHandler);
    await orders.startConsumers();
    await loyalty.startConsumers();

    const client = participantClient({
      name: 'loyalty',
      url: `${loyalty.server.url}/baton`,
      auth: { type: 'hmac', secret: SECRET },
    });
    orders.baton.sagas.define(
      saga('award', async (ctx, input: { points: number; refuse?: boolean }) => {
        await ctx.step('open', (tx) => effect(tx, ctx.sagaId, 'open'), {
          compensate: (tx) => effect(tx, ctx.sagaId, 'open', 'undo').then(() => {}),
        });
        return ctx.command<{ awarded: number }>(
          'award',
          {
            type: input.refuse ? 'points.refuse' : 'points.award',
            key: ctx.sagaId,
            payload: { sagaId: ctx.sagaId, points: input.points },
          },
          { timeoutMs: 20_000 },
        );
      }),
      saga('unanswered', async (ctx) => {
        await ctx.step('open', (tx) => effect(tx, ctx.sagaId, 'open'), {
          compensate: (tx) => effect(tx, ctx.sagaId, 'open', 'undo').then(() => {}),
        });
        await ctx.command(
          'ask',
          { type: 'nobody.listens', key: ctx.sagaId, payload: {} },
          { timeoutMs: 400 },
        );
      }),
      saga(
        'overdue',
        async (ctx) => {
          await ctx.step('open', (tx) => effect(tx, ctx.sagaId, 'open'), {
            compensate: (tx) => effect(tx, ctx.sagaId, 'open', 'undo').then(() => {}),
          });
          await ctx.sleep('long-nap', 60_000);
          await ctx.step('never', (tx) => effect(tx, ctx.sagaId, 'never'));
        },
        { deadlineMs: 500 },
      ),
      saga(
        'hopeless',
        async (ctx) => {
          await ctx.step('open', (tx) => effect(tx, ctx.sagaId, 'open'), {
            compensate: async (tx) => {
              await effect(tx, ctx.sagaId, 'open', 'undo-attempt');
              throw new Error('the undo service is gone');
            },
          });
          await ctx.step('fail', async () => {
            throw new TerminalError('no');
          });
        },
        { maxCompensationAttempts: 3, compensationBackoff: FAST },
      ),
      saga('granter', async (ctx) => {
        return ctx.call(
          'grant',
          async (key) => {
            const attempt = countAttempt(ctx.sagaId);
            const first = await client.call<{ granted: string }>(
              'grant',
              { sagaId: ctx.sagaId },
              key,
            );
            const again = await client.call<{ granted: string }>(
              'grant',
              { sagaId: ctx.sagaId },
              key,
            );
            expect(again).toEqual(first);
            // the first attempt "loses" the answer: the step is retried with the same key
            if (attempt === 1) throw new RetryableError('answer lost');
            return first;
          },
          { retry: { attempts: 3, backoff: FAST } },
        );
      }),
      saga('told-when', async (ctx) => {
        await ctx.step(
          'rate-limited',
          async () => {
            // the first attempt is told to come back in a minute (a 429's Retry-After, say)
            if (countAttempt(ctx.sagaId) === 1) throw new RetryableError('rate limited', 60_000);
          },
          { retry: { attempts: 3, backoff: FAST } },
        );
      }),
      saga('slow-local', async (ctx) => {
        await ctx.step(
          'slow',
          async (tx) => {
            const attempt = countAttempt(ctx.sagaId);
            // the first attempt overruns its timeout, then tries to write anyway
            if (attempt === 1) await tx.query('SELECT pg_sleep(0.6)');
            await effect(tx, ctx.sagaId, 'slow');
          },
          { retry: { attempts: 3, timeoutMs: 200, backoff: FAST } },
        );
      }),
    );
    worker = orders.baton.sagas.worker({ concurrency: 4, pollIntervalMs: 25 });
    worker.start();
  });
  afterAll(async () => {
    await worker?.stop();
    await orders?.stop();
    await loyalty?.stop();
  });

  const effects = async (service: TestService, sagaId: string) =>
    Object.fromEntries(
      (
        await service.database.db.query<{ step: string; kind: string; n: number }>(
          'SELECT step, kind, n FROM effects WHERE saga_id = $1',
          [sagaId],
        )
      ).rows.map((r) => [`${r.step}:${r.kind}`, r.n]),
    );

  it('a command goes through the outbox; the participant’s reply event resumes the saga', async () => {
    const { id } = await orders.baton.sagas.start('award', { points: 7 });
    const status = await orders.baton.sagas.waitFor(id, 30_000);
    expect(status.state).toBe('completed');
    expect(status.output).toEqual({ awarded: 7 });
    expect(status.steps.map((s) => `${s.name}:${s.kind}:${s.state}`)).toEqual([
      'open:local:completed',
      'award:command:completed',
    ]);
    expect(await effects(loyalty, id)).toEqual({ 'award:do': 1 });
    // the command left in the orchestrator's outbox with its correlation id
    const sent = await orders.database.db.query<{ headers: Record<string, string> }>(
      "SELECT headers FROM baton.outbox WHERE type = 'points.award' AND key = $1",
      [id],
    );
    expect(sent.rows.map((r) => r.headers['baton-correlation-id'])).toEqual([`${id}:award`]);
  });

  it('a refusing reply fails the command step for good and compensates', async () => {
    const { id } = await orders.baton.sagas.start('award', { points: 7, refuse: true });
    const status = await orders.baton.sagas.waitFor(id, 30_000);
    expect(status.state).toBe('compensated');
    expect(status.error).toMatch(/no such customer/);
    expect(await effects(orders, id)).toEqual({ 'open:do': 1, 'open:undo': 1 });
  });

  it('a command with no reply within its timeout compensates', async () => {
    const { id } = await orders.baton.sagas.start('unanswered', {});
    const status = await orders.baton.sagas.waitFor(id, 20_000);
    expect(status.state).toBe('compensated');
    expect(status.error).toMatch(/no reply to command nobody\.listens within 400 ms/);
    expect(status.steps.map((s) => `${s.name}:${s.state}`)).toEqual([
      'open:compensated',
      'ask:failed',
    ]);
    expect(await effects(orders, id)).toEqual({ 'open:do': 1, 'open:undo': 1 });
  });

  it('a saga past its deadline compensates, even while it sleeps on a long timer', async () => {
    const { id } = await orders.baton.sagas.start('overdue', {});
    // The timer runs for a minute; the deadline (0.5 s) must wake the saga first.
    const status = await orders.baton.sagas.waitFor(id, 20_000);
    expect(status.state).toBe('compensated');
    expect(status.error).toMatch(/deadline passed/);
    expect(await effects(orders, id)).toEqual({ 'open:do': 1, 'open:undo': 1 });
  });

  it('a compensation that always fails ends stuck, with its error, after maxCompensationAttempts', async () => {
    const { id } = await orders.baton.sagas.start('hopeless', {});
    const status = await orders.baton.sagas.waitFor(id, 20_000);
    expect(status.state).toBe('stuck');
    expect(status.error).toMatch(/open/);
    expect(status.error).toMatch(/the undo service is gone/);
    const open = status.steps.find((s) => s.name === 'open');
    expect(open).toMatchObject({ state: 'completed', compensationAttempts: 3 });
    expect(open?.lastError).toMatch(/the undo service is gone/);
    // every failed undo rolled back with its transaction; the step effect stays applied once
    expect(await effects(orders, id)).toEqual({ 'open:do': 1 });
    const row = await orders.database.db.query<{ stuck_from: string; lease_owner: string | null }>(
      'SELECT stuck_from, lease_owner FROM baton.sagas WHERE id = $1',
      [id],
    );
    expect(row.rows[0]).toEqual({ stuck_from: 'compensating', lease_owner: null });
    // a stuck saga is not picked up again by itself
    const runs = status.runs;
    await new Promise((r) => setTimeout(r, 300));
    expect((await orders.baton.sagas.status(id)).runs).toBe(runs);
  });

  it('ctx.call: the participant action runs once for repeats and retries with the same key', async () => {
    const { id } = await orders.baton.sagas.start('granter', {});
    const status = await orders.baton.sagas.waitFor(id, 20_000);
    expect(status.state).toBe('completed');
    expect(status.output).toEqual({ granted: `${id}:grant` });
    expect(status.steps[0]).toMatchObject({ name: 'grant', state: 'completed', attempts: 2 });
    expect(await effects(loyalty, id)).toEqual({ 'grant:do': 1 });
    const keys = await loyalty.database.db.query(
      'SELECT key, action FROM baton.idempotency_keys WHERE key = $1',
      [`${id}:grant`],
    );
    expect(keys.rows).toEqual([{ key: `${id}:grant`, action: 'grant' }]);
  });

  it("a step's RetryableError with retryAfterMs is retried no sooner than it asked (not by the backoff)", async () => {
    const { id } = await orders.baton.sagas.start('told-when', {});
    const waitSeconds = async () =>
      (
        await orders.database.db.query<{ wait_s: number | null }>(
          `SELECT extract(epoch FROM retry_at - now())::float AS wait_s FROM baton.saga_steps
           WHERE saga_id = $1 AND name = 'rate-limited'`,
          [id],
        )
      ).rows[0]?.wait_s ?? null;
    await eventually(async () => (await waitSeconds()) !== null, 'the retry recorded');
    const rows = [{ wait_s: await waitSeconds() }];
    // FAST backoff would retry within 50 ms; the step asked for 60 s.
    expect(rows[0]?.wait_s).toBeGreaterThan(50);
    await new Promise((r) => setTimeout(r, 300));
    expect(attempts.get(id), 'not retried before its time').toBe(1);
  });

  it('a local step that overruns its timeout cannot write after its transaction was given up', async () => {
    const { id } = await orders.baton.sagas.start('slow-local', {});
    const status = await orders.baton.sagas.waitFor(id, 20_000);
    expect(status.state).toBe('completed');
    expect(status.steps[0]).toMatchObject({ name: 'slow', state: 'completed', attempts: 2 });
    // let the overrunning first attempt finish whatever it still tries to do
    await new Promise((r) => setTimeout(r, 800));
    expect(await effects(orders, id)).toEqual({ 'slow:do': 1 });
  });
});

describe('ctx.sleep across a worker restart', () => {
  let orders: TestService;
  const instances: { baton: Baton; db: PgDatabase; worker: SagaWorker }[] = [];

  beforeAll(async () => {
    orders = await startService('steps_sleep');
    await orders.database.db.query(EFFECTS);
  });
  afterAll(async () => {
    for (const i of instances) {
      await i.worker.stop();
      await i.db.close();
    }
    await orders?.stop();
  });

  /** One "process" of the orders service: its own pool, Baton and worker. */
  function boot() {
    const db = new PgDatabase({ connectionString: orders.database.url, max: 4 });
    const baton = createBaton({ db, service: 'orders' });
    baton.sagas.define(
      saga('napper', async (ctx) => {
        await ctx.step('before', (tx) => effect(tx, ctx.sagaId, 'before'));
        await ctx.sleep('nap', 1500);
        await ctx.step('after', (tx) => effect(tx, ctx.sagaId, 'after'));
      }),
    );
    const worker = baton.sagas.worker({ pollIntervalMs: 25, leaseMs: 1500 });
    worker.start();
    const instance = { baton, db, worker };
    instances.push(instance);
    return instance;
  }

  it('the timer is in the database: a new worker resumes after it, the earlier step not re-run', async () => {
    const first = boot();
    const { id } = await first.baton.sagas.start('napper', {});
    await eventually(async () => {
      const s = await first.baton.sagas.status(id);
      return s.waitingFor === 'timer nap';
    }, 'the saga sleeps');
    await first.worker.stop();
    await first.db.close();
    instances.splice(instances.indexOf(first), 1);

    const second = boot();
    const status = await second.baton.sagas.waitFor(id, 20_000);
    expect(status.state).toBe('completed');
    const db = orders.database.db;
    const counts = await db.query('SELECT step, n FROM effects WHERE saga_id = $1 ORDER BY at', [
      id,
    ]);
    expect(counts.rows).toEqual([
      { step: 'before', n: 1 },
      { step: 'after', n: 1 },
    ]);
    // the step after the timer started only once the timer was over (database clock)
    const timing = await db.query<{ ok: boolean }>(
      `SELECT a.started_at >= n.wait_until AS ok FROM baton.saga_steps a JOIN baton.saga_steps n
         ON n.saga_id = a.saga_id AND n.name = 'nap' WHERE a.saga_id = $1 AND a.name = 'after'`,
      [id],
    );
    expect(timing.rows).toEqual([{ ok: true }]);
  });
});

describe('the disorder timeline through a saga over real HTTP', () => {
  let orders: TestService;
  let loyalty: TestService;
  let worker: SagaWorker;
  let proxy: Awaited<ReturnType<typeof startSagaProxy>>;

  beforeAll(async () => {
    orders = await startService('disorder_orders');
    loyalty = await startService('disorder_loyalty');
    await orders.database.db.query(EFFECTS);
    await loyalty.database.db.query(LOYALTY_TABLES);
    await loyalty.database.db.query("INSERT INTO accounts VALUES ('ada', 100)");
    loyalty.baton.participant.reservation('points', pointsReservation);
    // The network between them: the first try is held back; the first cancel
    // reaches the participant but its answer is lost, so the saga sends it again.
    proxy = await startSagaProxy(loyalty.server.url, ({ path, nth }) => {
      if (path.endsWith('/try') && nth === 1) return 'hold';
      if (path.endsWith('/cancel') && nth === 1) return 'drop-answer';
      return 'pass';
    });
    const client = participantClient({
      name: 'loyalty',
      url: `${proxy.url}/baton`,
      auth: { type: 'hmac', secret: SECRET },
      timeoutMs: 60_000,
    });
    orders.baton.sagas.define(
      saga(
        'spend',
        async (ctx, input: PointsPayload) => {
          await ctx.step('open', (tx) => effect(tx, ctx.sagaId, 'open'), {
            compensate: (tx) => effect(tx, ctx.sagaId, 'open', 'undo').then(() => {}),
          });
          await ctx.reserve('spend-points', client, 'points', input, {
            retry: { attempts: 1, timeoutMs: 400 },
          });
        },
        { compensationBackoff: FAST },
      ),
    );
    worker = orders.baton.sagas.worker({ pollIntervalMs: 25 });
    worker.start();
  });
  afterAll(async () => {
    await worker?.stop();
    await proxy?.close();
    await orders?.stop();
    await loyalty?.stop();
  });

  it('try held back, step timed out, cancel sent twice; the late try is refused, the balance untouched', async () => {
    const { id } = await orders.baton.sagas.start('spend', { customerId: 'ada', points: 40 });
    const status = await orders.baton.sagas.waitFor(id, 20_000);
    expect(status.state).toBe('compensated');
    expect(status.error).toMatch(/spend-points.*timed out after 400 ms/);
    const spend = status.steps.find((s) => s.name === 'spend-points');
    // the first cancel's answer was lost: the compensation ran a second time
    expect(spend).toMatchObject({ state: 'compensated', compensationAttempts: 1 });
    const cancels = proxy.calls.filter((c) => c.path.endsWith('/cancel'));
    expect(cancels.map((c) => [c.rule, c.status, JSON.parse(c.answer ?? '{}').outcome])).toEqual([
      ['drop-answer', 200, 'null-compensation'],
      ['pass', 200, 'duplicate'],
    ]);

    // Now the held try reaches the participant, after its cancel.
    await proxy.release();
    const lateTry = proxy.calls.find((c) => c.path.endsWith('/try'));
    expect(lateTry?.status).toBe(409);
    expect(JSON.parse(lateTry?.answer ?? '{}').error.code).toBe('BATON_CANCELLED_BEFORE_TRY');

    const db = loyalty.database.db;
    expect((await db.query('SELECT balance FROM accounts')).rows).toEqual([{ balance: 100 }]);
    expect((await db.query('SELECT * FROM holds')).rows).toEqual([]);
    expect((await db.query('SELECT * FROM movements')).rows).toEqual([]);
    const barrier = await db.query(
      'SELECT op, outcome FROM baton.barrier WHERE tx_id = $1 ORDER BY op',
      [id],
    );
    expect(barrier.rows).toEqual([
      { op: 'cancel', outcome: 'null' },
      { op: 'try', outcome: 'blocked' },
    ]);
    expect(
      (await orders.database.db.query('SELECT step, kind, n FROM effects ORDER BY at')).rows,
    ).toEqual([
      { step: 'open', kind: 'do', n: 1 },
      { step: 'open', kind: 'undo', n: 1 },
    ]);
  });
});
