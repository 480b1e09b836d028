import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/executor.ts';
import { type Baton, createBaton, saga, TerminalError } from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { databaseWith, freshDatabase } from './helpers.ts';

/*
 * Every database operation of a saga run, failed in turn — before it runs
 * (the connection refused) or after it ran (the answer lost: a commit that
 * happened all the same) — and with it the next one or two (the database
 * stays away a while). Whatever fails, a saga whose steps all succeed
 * must complete, each local step's effect applied once and the remote call
 * made under one key, never compensated: a database that goes away is not a
 * decision of the saga. Found by the chaos set's mixed scenario (a place
 * saga compensated after its order was accepted — the lookup that follows
 * a lost commit failed too, and the run took that for the saga function
 * throwing).
 */
type Mode = 'before' | 'after';

describe('a saga run with one database operation failed, at every point', () => {
  let database: TestDatabase;
  let baton: Baton;
  let worker: SagaWorker;
  /** From operation `at`, `length` operations fail: the first as `mode` says, the rest before they run. */
  let fault: { at: number; length: number; mode: Mode } | undefined;
  let operations = 0;
  // The remote participant: idempotent by key, as the contract requires.
  const remoteDone = new Set<string>();
  const remoteUndone = new Set<string>();

  /** Runs `op`, or fails it when it is the armed one. */
  async function counted<T>(op: () => Promise<T>): Promise<T> {
    if (!fault) return op();
    operations += 1;
    if (operations < fault.at) return op();
    const { mode, at, length } = fault;
    if (operations >= at + length - 1) fault = undefined;
    if (mode === 'before' || operations > at) throw new Error('Connection terminated unexpectedly');
    await op();
    throw new Error('Connection terminated unexpectedly'); // it happened all the same
  }

  beforeAll(async () => {
    database = await freshDatabase('saga_crash_points');
    const real = database.db;
    const flaky: Database = databaseWith(real, {
      query: (text, values) => counted(() => real.query(text, values)),
      transaction: (fn) => counted(() => real.transaction(fn)),
    });
    baton = createBaton({ db: flaky, service: 'orders' });
    await real.query(
      'CREATE TABLE effects (saga text NOT NULL, step text NOT NULL, n int NOT NULL DEFAULT 1, PRIMARY KEY (saga, step))',
    );
    const apply = (step: string) => async (tx: { query: Database['query'] }, id: string) => {
      await tx.query(
        'INSERT INTO effects (saga, step) VALUES ($1, $2) ON CONFLICT (saga, step) DO UPDATE SET n = effects.n + 1',
        [id, step],
      );
    };
    const undo = (step: string) => apply(`undo:${step}`);
    baton.sagas.define(
      saga('three', async (ctx, input: { id: string; doomed: boolean }) => {
        await ctx.step('a', (tx) => apply('a')(tx, input.id), {
          compensate: (tx) => undo('a')(tx, input.id),
        });
        await ctx.call(
          'remote',
          async (key) => {
            remoteDone.add(key);
            return { ok: true };
          },
          { compensate: async (_result, _key, key) => void remoteUndone.add(key) },
        );
        await ctx.step('b', (tx) => apply('b')(tx, input.id), {
          compensate: (tx) => undo('b')(tx, input.id),
        });
        if (input.doomed)
          await ctx.step('c', async () => {
            throw new TerminalError('refused for good');
          });
        return { done: input.id };
      }),
    );
    worker = baton.sagas.worker({ concurrency: 1, pollIntervalMs: 10, leaseMs: 300 });
    worker.start();
  });
  afterAll(async () => {
    await worker?.stop();
    await database?.drop();
  });

  async function started(id: string): Promise<boolean> {
    const r = await database.db.query('SELECT 1 FROM baton.sagas WHERE id = $1', [id]);
    return r.rows.length === 1;
  }

  async function settled(id: string): Promise<string> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const r = await database.db.query<{ state: string }>(
        'SELECT state FROM baton.sagas WHERE id = $1',
        [id],
      );
      const state = r.rows[0]?.state;
      if (state && ['completed', 'compensated', 'stuck'].includes(state)) return state;
      if (Date.now() > deadline) return `still ${state ?? 'missing'}`;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Runs one saga per crash point (operation, outage length, mode); returns those that ended wrong. */
  async function sweep(doomed: boolean, points: number): Promise<unknown[]> {
    const wrong: unknown[] = [];
    for (const mode of ['before', 'after'] as const)
      for (let at = 1; at <= points; at++)
        for (let length = 1; length <= 3; length++) {
          const id = `${doomed ? 'doomed' : 'fine'}-${mode}-${at}-${length}`;
          operations = 0;
          fault = { at, length, mode };
          // The outage may hit the start itself: the caller tries again, as callers do.
          for (let tries = 0; tries < 5 && !(await started(id)); tries++)
            await baton.sagas.start('three', { id, doomed }, { id }).catch(() => {});
          const state = await settled(id);
          fault = undefined;
          const effects = await database.db.query<{ step: string; n: number }>(
            'SELECT step, n FROM effects WHERE saga = $1 ORDER BY step',
            [id],
          );
          const key = `${id}:remote`;
          const seen = {
            state,
            effects: effects.rows.map((r) => `${r.step}×${r.n}`),
            remote: remoteDone.has(key) && !remoteUndone.has(key) ? 'done' : 'undone',
          };
          const expected = doomed
            ? {
                state: 'compensated',
                effects: ['a×1', 'b×1', 'undo:a×1', 'undo:b×1'],
                remote: 'undone',
              }
            : { state: 'completed', effects: ['a×1', 'b×1'], remote: 'done' };
          if (JSON.stringify(seen) !== JSON.stringify(expected)) wrong.push({ id, ...seen });
        }
    return wrong;
  }

  it('completes with every effect applied once, whichever operation fails and how', async () => {
    expect(await sweep(false, 6)).toEqual([]);
  }, 120_000);

  it('compensates every step once, whichever operation fails and how', async () => {
    expect(await sweep(true, 12)).toEqual([]);
  }, 120_000);
});
