import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Baton, createBaton, InvalidInputError, saga, TerminalError } from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/**
 * `compensateStart` undoes what the transaction that started the saga did
 * beside it (an order row inserted with `start(…, { tx })`): last, after the
 * steps, exactly once (its effect and its mark commit together), retried
 * while it fails and stuck past the bound — and never for a saga that
 * completes.
 */

let t: TestDatabase;
let baton: Baton;
let worker: SagaWorker;
/** Failures still to inject into compensateStart, per order. */
const failuresLeft = new Map<string, number>();

type Order = { orderId: string; fail: 'no' | 'step' };

beforeAll(async () => {
  t = await freshDatabase('compensate_start');
  await t.db.query(`CREATE TABLE orders (id text PRIMARY KEY, state text NOT NULL);
    CREATE TABLE undone (id text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE TABLE log (id text NOT NULL, what text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`);
  baton = createBaton({ db: t.db, service: 'orders' });
  baton.sagas.define(
    saga(
      'place',
      async (ctx, o: Order) => {
        await ctx.step(
          'reserve',
          (tx) => tx.query(`INSERT INTO log VALUES ($1, 'reserved')`, [o.orderId]),
          {
            compensate: async (tx) =>
              void (await tx.query(`INSERT INTO log VALUES ($1, 'released')`, [o.orderId])),
          },
        );
        await ctx.step('accept', async (tx) => {
          if (o.fail === 'step') throw new TerminalError('refused');
          await tx.query(`UPDATE orders SET state = 'placed' WHERE id = $1`, [o.orderId]);
        });
      },
      {
        maxCompensationAttempts: 3,
        compensationBackoff: { baseMs: 1, maxMs: 5 },
        compensateStart: async (tx, o) => {
          await tx.query(`UPDATE orders SET state = 'rejected' WHERE id = $1`, [o.orderId]);
          await tx.query(`INSERT INTO undone (id) VALUES ($1)`, [o.orderId]);
          await tx.query(`INSERT INTO log VALUES ($1, 'start undone')`, [o.orderId]);
          const left = failuresLeft.get(o.orderId) ?? 0;
          if (left > 0) {
            failuresLeft.set(o.orderId, left - 1);
            throw new Error(`injected failure (${left} left)`);
          }
        },
      },
    ),
  );
  worker = baton.sagas.worker({ pollIntervalMs: 20 });
  await worker.start();
});
afterAll(async () => {
  await worker?.stop();
  await t?.drop();
});

/** The request's transaction: the order row and the saga, together. */
async function place(o: Order) {
  return t.db.transaction(async (tx) => {
    await tx.query(`INSERT INTO orders VALUES ($1, 'pending')`, [o.orderId]);
    return baton.sagas.start('place', o, { id: o.orderId, tx });
  });
}

const rows = async (sql: string, values: unknown[]) => (await t.db.query(sql, values)).rows;

describe('compensateStart', () => {
  it('undoes the starting transaction last, once, and shows as step @start', async () => {
    await place({ orderId: 'a', fail: 'step' });
    const status = await baton.sagas.waitFor('a', { timeoutMs: 20_000 });
    expect(status.state).toBe('compensated');
    expect(await rows('SELECT state FROM orders WHERE id = $1', ['a'])).toEqual([
      { state: 'rejected' },
    ]);
    expect(await rows('SELECT what FROM log WHERE id = $1 ORDER BY at', ['a'])).toEqual([
      { what: 'reserved' },
      { what: 'released' },
      { what: 'start undone' },
    ]);
    expect(status.steps.find((s) => s.name === '@start')).toMatchObject({
      kind: 'local',
      state: 'compensated',
    });
  });

  it('is retried while it fails; its failed attempts leave nothing behind', async () => {
    failuresLeft.set('b', 2);
    await place({ orderId: 'b', fail: 'step' });
    const status = await baton.sagas.waitFor('b', { timeoutMs: 20_000 });
    expect(status.state).toBe('compensated');
    expect(await rows('SELECT count(*)::int AS n FROM undone WHERE id = $1', ['b'])).toEqual([
      { n: 1 },
    ]);
    expect(status.steps.find((s) => s.name === '@start')?.compensationAttempts).toBe(2);
  });

  it('gets the saga stuck past maxCompensationAttempts, naming @start', async () => {
    failuresLeft.set('c', 99);
    await place({ orderId: 'c', fail: 'step' });
    const status = await baton.sagas.waitFor('c', { timeoutMs: 20_000 });
    expect(status.state).toBe('stuck');
    expect(status.error).toMatch(/@start/);
    expect(await rows('SELECT state FROM orders WHERE id = $1', ['c'])).toEqual([
      { state: 'pending' },
    ]);
  });

  it('never runs for a saga that completes (and writes no @start step)', async () => {
    await place({ orderId: 'd', fail: 'no' });
    const status = await baton.sagas.waitFor('d', { timeoutMs: 20_000 });
    expect(status.state).toBe('completed');
    expect(await rows('SELECT state FROM orders WHERE id = $1', ['d'])).toEqual([
      { state: 'placed' },
    ]);
    expect(status.steps.map((s) => s.name)).toEqual(['reserve', 'accept']);
  });

  it('refuses a compensateStart that is not a function', () => {
    expect(() =>
      saga('bad', async () => {}, { compensateStart: 'mark rejected' as never }),
    ).toThrow(InvalidInputError);
  });
});
