import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LOYALTY_TABLES, pointsReservation } from '../examples/shop/loyalty-points.ts';
import { type Baton, createBaton, participantClient, saga } from '../src/index.ts';
import { PgDatabase } from '../src/pg.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { type FixtureProcess, ProcessGroup } from './fixtures/process-harness.ts';
import { placeOrder, SHOP_TABLES } from './fixtures/saga-shop.ts';
import { eventually, freshDatabase, SECRET } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

const LEASE_MS = 1500;

/**
 * Two orchestrator processes; one is frozen (SIGSTOP) in the middle of a
 * saga until its lease runs out and the other has finished the saga, then
 * thawed (SIGCONT). Its late writes must be refused by the fence: nothing
 * it does after waking may change the books.
 */
describe('a paused worker loses its sagas to another and cannot write after waking', () => {
  let ordersDb: TestDatabase;
  let loyalty: TestService;
  let orders: Baton;
  const group = new ProcessGroup();
  const stopped = new Set<number>();

  beforeAll(async () => {
    ordersDb = await freshDatabase('saga_pause_orders');
    await ordersDb.db.query(SHOP_TABLES);
    loyalty = await startService('saga_pause_loyalty');
    await loyalty.database.db.query(LOYALTY_TABLES);
    await loyalty.database.db.query("INSERT INTO accounts VALUES ('c0', 1000)");
    loyalty.baton.participant.reservation('points', pointsReservation);
    orders = createBaton({ db: ordersDb.db, service: 'orders' });
    orders.sagas.define(
      placeOrder(
        participantClient({
          name: 'loyalty',
          url: loyalty.server.url,
          auth: { type: 'bearer', token: 'x' },
        }),
      ),
    );
  });
  afterEach(async () => {
    // SIGKILL ends a stopped process too; continuing it first keeps its exit ordinary
    for (const pid of stopped) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {}
    }
    stopped.clear();
    await group.killAll();
  });
  afterAll(async () => {
    await group.killAll();
    await loyalty?.stop();
    await ordersDb?.drop();
  });

  function orchestrator(label: string): FixtureProcess {
    return group.add(label, 'test/fixtures/saga-orchestrator.ts', {
      url: ordersDb.url,
      participantUrl: `${loyalty.server.url}/baton`,
      secret: SECRET,
      label,
      mode: 'pause',
      leaseMs: LEASE_MS,
      concurrency: 2,
    });
  }

  const sagaRow = async (id: string) =>
    (
      await ordersDb.db.query<{ state: string; fence: string; lease_owner: string | null }>(
        'SELECT state, fence, lease_owner FROM baton.sagas WHERE id = $1',
        [id],
      )
    ).rows[0];

  it('no step runs twice; the woken worker’s step transaction and record are refused', async () => {
    const a = orchestrator('worker-a');
    const b = orchestrator('worker-b');
    const pidA = Number(/pid=(\d+)/.exec(await a.start())?.[1]);
    // 1: frozen between the reservation and the last local step (its transaction not begun);
    // 2: frozen with the try's answer in hand, before recording it.
    const ids = ['1.before-accept', '2.after-try'];
    const pausedLines = ids.map((id) => a.waitForLine(new RegExp(`^paused \\S+ ${id}$`), 30_000));
    for (const id of ids) {
      await orders.sagas.start('place-order', { customerId: 'c0', points: 10 }, { id });
    }
    await Promise.all(pausedLines);
    const fenceAtPause = new Map<string, number>();
    for (const id of ids) {
      const row = await sagaRow(id);
      expect(row?.lease_owner).toBe('worker-a');
      fenceAtPause.set(id, Number(row?.fence));
    }
    process.kill(pidA, 'SIGSTOP');
    stopped.add(pidA);

    // Worker b takes both over once a's leases expire, and finishes them.
    await b.start();
    await eventually(
      async () => {
        const rows = await Promise.all(ids.map(sagaRow));
        return rows.every((r) => r?.state === 'completed');
      },
      'worker b completed both sagas',
      30_000,
    );
    const leaseLost = ids.map((id) => a.waitForLine(new RegExp(`^lease-lost ${id} `), 30_000));
    process.kill(pidA, 'SIGCONT');
    stopped.delete(pidA);
    for (const id of ids) a.send(`go ${id}`);
    const lost = await Promise.all(leaseLost);
    for (const [i, id] of ids.entries()) {
      // a wrote with the token it had when it was frozen; the saga's token had moved on
      expect(lost[i]).toBe(`lease-lost ${id} ${fenceAtPause.get(id)}`);
      const row = await sagaRow(id);
      expect(row?.state).toBe('completed');
      expect(Number(row?.fence)).toBeGreaterThan(fenceAtPause.get(id) as number);
    }
    // the books: every effect once
    const o = ordersDb.db;
    expect(
      (await o.query('SELECT id, count(*)::int AS n FROM orders GROUP BY id ORDER BY id')).rows,
    ).toEqual(ids.map((id) => ({ id, n: 1 })));
    expect((await o.query('SELECT order_id, what FROM order_log ORDER BY order_id')).rows).toEqual(
      ids.map((id) => ({ order_id: id, what: 'placed' })),
    );
    const steps = await o.query(
      `SELECT saga_id, name, state, attempts FROM baton.saga_steps ORDER BY saga_id, ordinal`,
    );
    expect(steps.rows).toEqual(
      ids.flatMap((id) => [
        { saga_id: id, name: 'create-order', state: 'completed', attempts: 1 },
        { saga_id: id, name: 'spend-points', state: 'confirmed', attempts: 1 },
        { saga_id: id, name: 'accept-order', state: 'completed', attempts: 1 },
      ]),
    );
    const l = loyalty.database.db;
    expect(
      (await l.query('SELECT reference, points FROM movements ORDER BY reference')).rows,
    ).toEqual(ids.map((id) => ({ reference: `spend:${id}`, points: -10 })));
    expect((await l.query('SELECT * FROM holds')).rows).toEqual([]);
    expect((await l.query('SELECT balance FROM accounts')).rows).toEqual([{ balance: 980 }]);
    // worker a is alive and well after losing its sagas
    expect(a.running).toBe(true);
  }, 90_000);
});

/**
 * Per-key order: sagas with the same key run one at a time, in the order
 * their starts committed; different keys share the workers.
 */
describe('sagas of one key run one at a time, in start order', () => {
  let db: TestDatabase;
  const pools: PgDatabase[] = [];
  const workers: SagaWorker[] = [];

  beforeAll(async () => {
    db = await freshDatabase('saga_keys');
    await db.db.query(`CREATE TABLE runs (
      saga_id text PRIMARY KEY, key text NOT NULL,
      began_at timestamptz NOT NULL DEFAULT clock_timestamp(), ended_at timestamptz)`);
  });
  afterAll(async () => {
    for (const w of workers) await w.stop();
    for (const p of pools) await p.close();
    await db?.drop();
  });

  function instance(): Baton {
    const pool = new PgDatabase({ connectionString: db.url, max: 8 });
    pools.push(pool);
    const baton = createBaton({ db: pool, service: 'orders' });
    baton.sagas.define(
      saga('keyed', async (ctx, input: { key: string }) => {
        await ctx.step('begin', (tx) =>
          tx.query('INSERT INTO runs (saga_id, key) VALUES ($1, $2)', [ctx.sagaId, input.key]),
        );
        // suspended between steps: the key stays taken while the saga waits
        await ctx.sleep('pause', 20);
        await ctx.step('work', (tx) => tx.query('SELECT pg_sleep(0.01)'));
        await ctx.step('end', (tx) =>
          tx.query('UPDATE runs SET ended_at = clock_timestamp() WHERE saga_id = $1', [ctx.sagaId]),
        );
      }),
    );
    return baton;
  }

  it('2 workers × concurrency 4, 40 sagas over 4 keys: no overlap within a key, start order kept', async () => {
    const first = instance();
    const second = instance();
    const keys = ['k0', 'k1', 'k2', 'k3'];
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const key = keys[i % keys.length] as string;
        return (i % 2 ? first : second).sagas.start('keyed', { key }, { key, id: `s${i}` });
      }),
    );
    for (const b of [first, second]) {
      const w = b.sagas.worker({ concurrency: 4, pollIntervalMs: 20, leaseMs: 5000 });
      workers.push(w);
      w.start();
    }
    await eventually(
      async () => {
        const r = await db.db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM baton.sagas WHERE state = 'completed'",
        );
        return r.rows[0]?.n === 40;
      },
      'all 40 sagas completed',
      60_000,
    );
    const rows = (
      await db.db.query<{
        id: string;
        key: string;
        key_seq: string;
        after_previous: boolean | null;
      }>(
        `SELECT s.id, s.key, s.key_seq, r.began_at > lag(s.finished_at) OVER (PARTITION BY s.key ORDER BY s.key_seq) AS after_previous
         FROM baton.sagas s JOIN runs r ON r.saga_id = s.id ORDER BY s.key, s.key_seq`,
      )
    ).rows;
    expect(rows.length).toBe(40);
    for (const key of keys) {
      const ofKey = rows.filter((r) => r.key === key);
      expect(ofKey.map((r) => Number(r.key_seq))).toEqual(
        Array.from({ length: 10 }, (_, i) => i + 1),
      );
      // each saga of the key began only after the previous one (by start order) had finished
      expect(ofKey.map((r) => r.after_previous)).toEqual([null, ...Array(9).fill(true)]);
    }
    // and the begin order per key is the start (key_seq) order
    const byBegin = await db.db.query<{ key: string; seqs: string[] }>(
      `SELECT s.key, array_agg(s.key_seq::text ORDER BY r.began_at) AS seqs
       FROM baton.sagas s JOIN runs r ON r.saga_id = s.id GROUP BY s.key ORDER BY s.key`,
    );
    for (const r of byBegin.rows) {
      expect(r.seqs.map(Number)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    }
  }, 90_000);

  it('a start that commits later runs later: a second start of the key waits for the first’s transaction', async () => {
    const baton = instance();
    const pool = pools[pools.length - 1] as PgDatabase;
    let releaseFirst!: () => void;
    const firstMayCommit = new Promise<void>((r) => {
      releaseFirst = r;
    });
    let firstStarted!: () => void;
    const started = new Promise<void>((r) => {
      firstStarted = r;
    });
    const firstTx = pool.transaction(async (tx) => {
      await baton.sagas.start('keyed', { key: 'kx' }, { key: 'kx', id: 'x-first', tx });
      firstStarted();
      await firstMayCommit;
    });
    await started;
    const second = baton.sagas.start('keyed', { key: 'kx' }, { key: 'kx', id: 'x-second' });
    await eventually(async () => {
      const r = await db.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%saga_keys%'`,
      );
      return (r.rows[0]?.n ?? 0) > 0;
    }, 'the second start waits on the key');
    releaseFirst();
    await firstTx;
    await second;
    await eventually(async () => {
      const r = await db.db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM baton.sagas WHERE id LIKE 'x-%' AND state = 'completed'",
      );
      return r.rows[0]?.n === 2;
    }, 'both completed');
    const order = await db.db.query(
      `SELECT s.id, s.key_seq::int AS seq FROM baton.sagas s JOIN runs r ON r.saga_id = s.id
       WHERE s.key = 'kx' ORDER BY r.began_at`,
    );
    expect(order.rows).toEqual([
      { id: 'x-first', seq: 1 },
      { id: 'x-second', seq: 2 },
    ]);
  }, 60_000);
});
