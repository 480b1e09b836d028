import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import {
  type Baton,
  createBaton,
  InvalidInputError,
  NotFoundError,
  SagaTimeoutError,
  saga,
} from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { databaseWith, freshDatabase } from './helpers.ts';

/**
 * `sagas.waitFor` is told when a saga settles (the `saga_settled` trigger's
 * NOTIFY), not polling: a waiter reads the saga a handful of times however
 * long the saga takes — also when another process's worker settles it, and
 * still (by its slow re-read) when the settle was written with triggers off.
 * A wait that runs out throws a `SagaTimeoutError` of its own, and a saga
 * started from its definition answers a typed output.
 */

let t: TestDatabase;
/** Reads of one saga's row by `waitFor` (its `status`), counted per saga id. */
const reads = new Map<string, number>();
/** Released by the test: the `gated` saga's step waits for it. */
const gates = new Map<string, () => void>();

const gated = saga('gated', async (ctx, input: { n: number }) => {
  await ctx.step('wait-for-the-test', async () => {
    await new Promise<void>((resolve) => gates.set(ctx.sagaId, resolve));
  });
  return { doubled: input.n * 2 };
});

function batonOn(counting: boolean): Baton {
  const db = counting
    ? databaseWith(t.db, {
        query: (text, values) => {
          if (/FROM .*\.sagas WHERE id = \$1/.test(text) && typeof values?.[0] === 'string')
            reads.set(values[0], (reads.get(values[0]) ?? 0) + 1);
          return t.db.query(text, values);
        },
      })
    : t.db;
  const baton = createBaton({ db, service: 'waiter' });
  baton.sagas.define(gated);
  return baton;
}

/** Waits (by polling the table — the test's own eyes) until the saga's step is running. */
async function stepRunning(id: string): Promise<void> {
  for (let i = 0; i < 400 && !gates.has(id); i++) await new Promise((r) => setTimeout(r, 10));
  if (!gates.has(id)) throw new Error(`the step of ${id} never started`);
}

let waiter: Baton;
let runner: Baton;
let worker: SagaWorker;

beforeAll(async () => {
  t = await freshDatabase('saga_wait');
  waiter = batonOn(true); // only waits: no worker of its own
  runner = batonOn(false); // the "other process" whose worker runs the sagas
  worker = runner.sagas.worker({ pollIntervalMs: 20 });
  await worker.start();
});
afterAll(async () => {
  await worker?.stop();
  await t?.drop();
});

describe('sagas.waitFor', () => {
  it('is told when another process settles the saga: a few reads, however long it runs', async () => {
    const started = await waiter.sagas.start(gated, { n: 21 }, { id: 'told-1' });
    const waiting = waiter.sagas.waitFor(started, { timeoutMs: 20_000 });
    await stepRunning('told-1');
    // the saga runs on for 600 ms; a 25 ms poll would read it ~24 times meanwhile
    await new Promise((r) => setTimeout(r, 600));
    gates.get('told-1')?.();
    const status = await waiting;
    expect(status.state).toBe('completed');
    expect(status.output).toEqual({ doubled: 42 });
    expect(reads.get('told-1')).toBeLessThanOrEqual(3);
  });

  it('throws SagaTimeoutError when the saga has not settled in time; the saga goes on', async () => {
    await waiter.sagas.start(gated, { n: 1 }, { id: 'slow-1' });
    await stepRunning('slow-1');
    const error = await waiter.sagas.waitFor('slow-1', { timeoutMs: 150 }).catch((e) => e);
    expect(error).toBeInstanceOf(SagaTimeoutError);
    expect(error).toMatchObject({
      code: 'BATON_SAGA_TIMEOUT',
      sagaId: 'slow-1',
      state: 'running',
      timeoutMs: 150,
      retryable: true,
    });
    gates.get('slow-1')?.();
    expect((await waiter.sagas.waitFor('slow-1')).state).toBe('completed');
  });

  it('still returns when the settle was written with triggers off (no NOTIFY): by its slow re-read', async () => {
    // quiet-2 queues behind quiet-1 (same key), so no worker holds its row
    await waiter.sagas.start(gated, { n: 2 }, { id: 'quiet-1', key: 'quiet' });
    await waiter.sagas.start(gated, { n: 3 }, { id: 'quiet-2', key: 'quiet' });
    await stepRunning('quiet-1');
    const waiting = waiter.sagas.waitFor('quiet-2', { timeoutMs: 10_000 });
    await t.db.transaction(async (tx) => {
      await tx.query('SET LOCAL session_replication_role = replica');
      await tx.query(
        `UPDATE baton.sagas SET state = 'compensated', finished_at = now() WHERE id = 'quiet-2'`,
      );
    });
    expect((await waiting).state).toBe('compensated');
    gates.get('quiet-1')?.();
  });

  it('answers at once for a settled saga, refuses a bad timeout and an unknown id', async () => {
    const done = await waiter.sagas.waitFor('told-1');
    expect(done.state).toBe('completed');
    for (const timeoutMs of [-1, Number.NaN, 2 ** 31, '10' as unknown as number])
      await expect(waiter.sagas.waitFor('told-1', { timeoutMs })).rejects.toThrow(
        InvalidInputError,
      );
    await expect(waiter.sagas.waitFor('no-such-saga')).rejects.toThrow(NotFoundError);
  });

  it('types the output of a saga started from its definition', async () => {
    const started = await waiter.sagas.start(gated, { n: 5 }, { id: 'typed-1' });
    expectTypeOf(started.id).toEqualTypeOf<string>();
    await stepRunning('typed-1');
    gates.get('typed-1')?.();
    const status = await waiter.sagas.waitFor(started);
    expectTypeOf(status.output).toEqualTypeOf<{ doubled: number } | null>();
    expect(status.output?.doubled).toBe(10);
    // never called: the input is typed by the definition
    // @ts-expect-error
    const _wrongInput = () => waiter.sagas.start(gated, { m: 1 });
  });
});
