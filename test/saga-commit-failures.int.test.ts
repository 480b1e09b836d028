import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Baton, createBaton, saga } from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { databaseWith, freshDatabase } from './helpers.ts';

/*
 * A local step's COMMIT can fail for a reason of its own — a deferred
 * constraint checked at COMMIT, a connection lost on the way. Written from
 * the reproductions of two outside reviews (of a change that held a step's
 * commit open, reverted): the step fails as a thrown step does (its retries,
 * then compensation), it never loops, and nothing of the run goes ahead of
 * a step whose commit then fails — a `call` and steps run concurrently after
 * it included.
 */
describe('a held step whose commit fails', () => {
  let database: TestDatabase;
  let baton: Baton;
  let worker: SagaWorker;
  const runs = new Map<string, number>();
  const bump = (what: string) => runs.set(what, (runs.get(what) ?? 0) + 1);
  const log: string[] = [];
  let loseCommitOfA = true;

  beforeAll(async () => {
    database = await freshDatabase('saga_held_commit_fails');
    const real = database.db;
    await real.query(`
      CREATE TABLE uniq (id text, CONSTRAINT uniq_u UNIQUE (id) DEFERRABLE INITIALLY DEFERRED);
      INSERT INTO uniq VALUES ('taken');
      CREATE TABLE eff (saga text NOT NULL, step text NOT NULL);`);
    // The transaction that wrote step a of saga X loses its connection before COMMIT, once.
    const flaky = databaseWith(real, {
      transaction: (fn) =>
        real.transaction(async (tx) => {
          const result = await fn(tx);
          const mine = await tx.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM eff WHERE saga = 'X' AND step = 'a'",
          );
          if (loseCommitOfA && (mine.rows[0]?.n ?? 0) > 0) {
            loseCommitOfA = false;
            throw new Error('Connection terminated unexpectedly'); // rolled back for real
          }
          return result;
        }),
    });
    baton = createBaton({ db: flaky, service: 'orders' });
    await baton.migrate();
    const retry = { attempts: 2, backoff: { baseMs: 10, maxMs: 10 } };
    const violating = (id: string) => async (tx: { query: TestDatabase['db']['query'] }) => {
      bump(`${id}:a`);
      await tx.query("INSERT INTO uniq VALUES ('taken')"); // refused only at COMMIT
    };
    const effect =
      (id: string, step: string) => async (tx: { query: TestDatabase['db']['query'] }) => {
        bump(`${id}:${step}`);
        await tx.query('INSERT INTO eff VALUES ($1, $2)', [id, step]);
      };
    const seesA = async (id: string) =>
      ((await real.query("SELECT 1 FROM eff WHERE saga = $1 AND step = 'a'", [id])).rowCount ?? 0) >
      0;
    baton.sagas.define(
      saga('last', async (ctx, input: { id: string }) => {
        await ctx.step('a', violating(input.id), { retry });
      }),
      saga('middle', async (ctx, input: { id: string }) => {
        await ctx.step('a', violating(input.id), { retry, compensate: async () => {} });
        await ctx.step('b', effect(input.id, 'b'));
      }),
      saga('then-concurrent', async (ctx, input: { id: string }) => {
        await ctx.step('a', violating(input.id), { retry });
        await Promise.all([
          ctx.step('b', effect(input.id, 'b')),
          ctx.step('c', effect(input.id, 'c')),
          ctx.call('y', async () => void bump(`${input.id}:y`)),
        ]);
      }),
      saga('lost-then-concurrent', async (ctx, input: { id: string }) => {
        await ctx.step('a', effect(input.id, 'a'));
        await Promise.all([
          ctx.step('b', async (tx) => {
            log.push(`b runs; a committed: ${await seesA(input.id)}`);
            await effect(input.id, 'b')(tx);
          }),
          ctx.step('c', async (tx) => {
            log.push(`c runs; a committed: ${await seesA(input.id)}`);
            await effect(input.id, 'c')(tx);
          }),
          ctx.call(
            'y',
            async () => void log.push(`y called; a committed: ${await seesA(input.id)}`),
          ),
        ]);
      }),
    );
    worker = baton.sagas.worker({ concurrency: 2, pollIntervalMs: 20, leaseMs: 600 });
    worker.start();
  });
  afterAll(async () => {
    await worker?.stop();
    await database?.drop();
  });

  it.each([
    ['last', 'L'],
    ['middle', 'M'],
    ['then-concurrent', 'C'],
  ])(
    '%s: a deferred constraint refusing the commit fails the step after its attempts, and the saga compensates',
    async (name, id) => {
      const started = await baton.sagas.start(name, { id }, { id });
      const status = await baton.sagas.waitFor(started, 15_000);
      expect(status.state).toBe('compensated');
      expect(status.steps.find((s) => s.name === 'a')).toMatchObject({
        state: 'failed',
        attempts: 2,
      });
      expect(runs.get(`${id}:a`)).toBe(2);
      for (const after of ['b', 'c', 'y']) expect(runs.get(`${id}:${after}`)).toBeUndefined();
    },
  );

  it('nothing of the run goes ahead of a step whose commit then fails', async () => {
    const started = await baton.sagas.start('lost-then-concurrent', { id: 'X' }, { id: 'X' });
    expect((await baton.sagas.waitFor(started, 15_000)).state).toBe('completed');
    expect(log.length).toBeGreaterThanOrEqual(3);
    expect(log.filter((line) => line.endsWith('false'))).toEqual([]);
    const rows = await database.db.query<{ step: string }>(
      "SELECT step FROM eff WHERE saga = 'X' ORDER BY step",
    );
    expect(rows.rows.map((r) => r.step)).toEqual(['a', 'b', 'c']);
  });
});

/*
 * A local step's COMMIT answer is lost while the COMMIT is still on its way
 * (the connection dropped mid-COMMIT; the server finishes it a moment later).
 * The step looks at its record before recording a failure — but the commit
 * lands after that look. Found by an outside review: the failure record then
 * replaced the landed `completed` one and the step ran twice.
 */
describe('a step whose COMMIT lands after its answer was lost', () => {
  let database: TestDatabase;
  let baton: Baton;
  let worker: SagaWorker;
  let slowLostCommit = false;
  let armed = true;

  beforeAll(async () => {
    database = await freshDatabase('saga_slow_lost_commit');
    const real = database.db;
    await real.query('CREATE TABLE effects (saga text NOT NULL, step text NOT NULL)');
    const flaky = databaseWith(real, {
      transaction: async (fn) => {
        let lost: () => void = () => {};
        const answerLost = new Promise<'lost'>((r) => {
          lost = () => r('lost');
        });
        // Once asked (by the step's action): the work is done, then COMMIT takes 400 ms,
        // and the caller hears of a lost connection at once.
        const committing = real.transaction(async (tx) => {
          const result = await fn(tx);
          if (slowLostCommit) {
            slowLostCommit = false;
            lost();
            await new Promise((r) => setTimeout(r, 400));
          }
          return result;
        });
        const first = await Promise.race([committing.then(() => 'answered' as const), answerLost]);
        if (first === 'lost') {
          committing.catch(() => {});
          throw new Error('Connection terminated unexpectedly');
        }
        return committing;
      },
    });
    baton = createBaton({ db: flaky, service: 'orders' });
    await baton.migrate();
    baton.sagas.define(
      saga('once', async (ctx, input: { id: string }) => {
        await ctx.step(
          'a',
          async (tx) => {
            await tx.query("INSERT INTO effects VALUES ($1, 'a')", [input.id]);
            slowLostCommit = armed; // the first run only
            armed = false;
          },
          { retry: { attempts: 3, backoff: { baseMs: 10, maxMs: 10 } } },
        );
      }),
    );
    worker = baton.sagas.worker({ concurrency: 1, pollIntervalMs: 20, leaseMs: 2_000 });
    worker.start();
  });
  afterAll(async () => {
    await worker?.stop();
    await database?.drop();
  });

  it('keeps the landed record: the step ran once', async () => {
    const started = await baton.sagas.start('once', { id: 'S1' }, { id: 'S1' });
    const status = await baton.sagas.waitFor(started, 15_000);
    expect(status.state).toBe('completed');
    const rows = await database.db.query("SELECT step FROM effects WHERE saga = 'S1'");
    expect(rows.rows).toEqual([{ step: 'a' }]);
  });
});
