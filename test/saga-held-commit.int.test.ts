import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Baton, createBaton, saga } from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { databaseWith, freshDatabase } from './helpers.ts';

/*
 * A saga's completion rides on the commit of its last local step: the step's
 * transaction is held open after its work until the run's next move (issue
 * 15: commits per local saga). What could go wrong, each tried here on real
 * PostgreSQL: the completion not riding at all; a transaction held across
 * the saga function's own I/O (its locks held, its effect invisible); a
 * completion that fails inside the held transaction (the step must roll back
 * with it and run again, once); a riding commit whose answer is lost (the
 * saga is completed and must stay so, not be marked as waiting); steps run
 * concurrently (no deadlock on the saga's row).
 */
describe('the completion commits with the last local step', () => {
  let database: TestDatabase;
  let other: pg.Pool;
  let baton: Baton;
  let worker: SagaWorker;
  let loseNextCommit = false;
  const seenCommitted: boolean[] = [];

  beforeAll(async () => {
    database = await freshDatabase('saga_held_commit');
    other = new pg.Pool({ connectionString: database.url, max: 2 });
    const real = database.db;
    const flaky = databaseWith(real, {
      transaction: async (fn) => {
        const result = await real.transaction(fn);
        if (loseNextCommit) {
          loseNextCommit = false;
          throw new Error('Connection terminated unexpectedly'); // committed all the same
        }
        return result;
      },
    });
    await real.query(`CREATE TABLE effects (saga text NOT NULL, step text NOT NULL,
      PRIMARY KEY (saga, step))`);
    baton = createBaton({ db: flaky, service: 'orders' });
    await baton.migrate();
    baton.sagas.define(
      saga('three', async (ctx, input: { id: string }) => {
        for (const name of ['a', 'b', 'c'])
          await ctx.step(name, (tx) =>
            tx.query('INSERT INTO effects VALUES ($1, $2)', [input.id, name]),
          );
        return 'done';
      }),
      saga('then-io', async (ctx, input: { id: string }) => {
        await ctx.step('a', (tx) =>
          tx.query('INSERT INTO effects VALUES ($1, $2)', [input.id, 'a']),
        );
        // The function's own I/O after its last step: the step must be committed by now.
        await new Promise((r) => setTimeout(r, 30));
        const r = await other.query('SELECT 1 FROM effects WHERE saga = $1', [input.id]);
        seenCommitted.push(r.rowCount === 1);
      }),
      saga('lost-answer', async (ctx, input: { id: string }) => {
        await ctx.step('a', async (tx) => {
          await tx.query('INSERT INTO effects VALUES ($1, $2)', [input.id, 'a']);
          loseNextCommit = true;
        });
      }),
      saga('concurrent', async (ctx, input: { id: string }) => {
        await Promise.all(
          ['a', 'b', 'c'].map((name) =>
            ctx.step(name, (tx) =>
              tx.query('INSERT INTO effects VALUES ($1, $2)', [input.id, name]),
            ),
          ),
        );
      }),
    );
    worker = baton.sagas.worker({ concurrency: 2, pollIntervalMs: 20, leaseMs: 600 });
    worker.start();
  });
  afterAll(async () => {
    await worker?.stop();
    await other?.end();
    await database?.drop();
  });

  const effects = async (id: string) =>
    (
      await database.db.query<{ step: string }>(
        'SELECT step FROM effects WHERE saga = $1 ORDER BY step',
        [id],
      )
    ).rows.map((r) => r.step);
  /** Whether the saga's row was last written by the transaction that wrote its step `step`. */
  const sameCommit = async (id: string, step: string) => {
    const r = await database.db.query<{ same: boolean }>(
      `SELECT s.xmin::text = st.xmin::text AS same FROM baton.sagas s
       JOIN baton.saga_steps st ON st.saga_id = s.id AND st.name = $2 WHERE s.id = $1`,
      [id, step],
    );
    return r.rows[0]?.same;
  };

  it('writes the last step and the completion in one transaction', async () => {
    const started = await baton.sagas.start('three', { id: 's1' }, { id: 's1' });
    const status = await baton.sagas.waitFor(started, 10_000);
    expect(status).toMatchObject({ state: 'completed', output: 'done' });
    expect(await effects('s1')).toEqual(['a', 'b', 'c']);
    expect(await sameCommit('s1', 'c')).toBe(true);
    expect(await sameCommit('s1', 'b')).toBe(false);
  });

  it('commits the step alone before the function’s own I/O, then completes', async () => {
    const started = await baton.sagas.start('then-io', { id: 's2' }, { id: 's2' });
    expect((await baton.sagas.waitFor(started, 10_000)).state).toBe('completed');
    expect(seenCommitted).toEqual([true]);
    expect(await sameCommit('s2', 'a')).toBe(false);
  });

  it('a completion that fails in the held transaction takes the step with it; the step runs again, once', async () => {
    // An operator's trigger refuses the first completion of this saga (a sequence
    // counts the attempts: it is not rolled back with the refusing transaction).
    await database.db.query(`
      CREATE SEQUENCE completions;
      CREATE FUNCTION refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.state = 'completed' AND NEW.id = 's3' AND nextval('completions') = 1 THEN
          RAISE EXCEPTION 'refused once';
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_once BEFORE UPDATE ON baton.sagas FOR EACH ROW EXECUTE FUNCTION refuse_once();`);
    try {
      const started = await baton.sagas.start('three', { id: 's3' }, { id: 's3' });
      const status = await baton.sagas.waitFor(started, 15_000);
      expect(status.state).toBe('completed');
      expect(await effects('s3')).toEqual(['a', 'b', 'c']);
      // Refused once, then completed; step c, rolled back with the refusal, ran again.
      const tried = await database.db.query('SELECT last_value::int AS n FROM completions');
      expect(tried.rows).toEqual([{ n: 2 }]);
      expect(await sameCommit('s3', 'c')).toBe(true);
    } finally {
      await database.db.query('DROP TRIGGER refuse_once ON baton.sagas');
    }
  });

  it('a riding commit whose answer is lost leaves the saga completed, waiting for nothing', async () => {
    const started = await baton.sagas.start('lost-answer', { id: 's4' }, { id: 's4' });
    expect((await baton.sagas.waitFor(started, 10_000)).state).toBe('completed');
    await new Promise((r) => setTimeout(r, 300)); // what the failed run does next
    const row = await database.db.query(
      "SELECT state, waiting_for FROM baton.sagas WHERE id = 's4'",
    );
    expect(row.rows).toEqual([{ state: 'completed', waiting_for: null }]);
    expect(await effects('s4')).toEqual(['a']);
  });

  it('steps run concurrently commit one after another, without deadlock', async () => {
    const started = await baton.sagas.start('concurrent', { id: 's5' }, { id: 's5' });
    expect((await baton.sagas.waitFor(started, 10_000)).state).toBe('completed');
    expect(await effects('s5')).toEqual(['a', 'b', 'c']);
  });
});
