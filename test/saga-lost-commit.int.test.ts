import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Baton, createBaton, saga } from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { databaseWith, freshDatabase } from './helpers.ts';

/*
 * A local step's transaction commits, but its answer is lost (the database
 * restarting under it): the worker sees an error. Found by a chaos soak —
 * the failure was recorded over the committed step, the step ran again and,
 * finding nothing left to do, failed for good: the saga compensated without
 * undoing the step. The worker must look at the step's record first.
 */
describe('a local step whose commit answer is lost', () => {
  let database: TestDatabase;
  let baton: Baton;
  let worker: SagaWorker;
  let loseNextCommit = false;

  beforeAll(async () => {
    database = await freshDatabase('saga_lost_commit');
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
    baton = createBaton({ db: flaky, service: 'orders' });
    await real.query('CREATE TABLE orders (id text PRIMARY KEY, state text NOT NULL)');
    baton.sagas.define(
      saga('cancel', async (ctx, input: { id: string }) => {
        await ctx.step(
          'mark-cancelled',
          async (tx) => {
            const r = await tx.query(
              "UPDATE orders SET state = 'cancelled' WHERE id = $1 AND state = 'placed'",
              [input.id],
            );
            if (r.rowCount !== 1) throw new Error(`order ${input.id} is not placed`);
            loseNextCommit = true;
          },
          {
            retry: { attempts: 1 },
            compensate: async (tx) =>
              void (await tx.query("UPDATE orders SET state = 'placed' WHERE id = $1", [input.id])),
          },
        );
      }),
    );
    worker = baton.sagas.worker({ concurrency: 1, pollIntervalMs: 20 });
    worker.start();
  });
  afterAll(async () => {
    await worker?.stop();
    await database?.drop();
  });

  it('takes the committed result instead of running the step again', async () => {
    await database.db.query("INSERT INTO orders VALUES ('o1', 'placed')");
    const { id } = await baton.sagas.start('cancel', { id: 'o1' });
    const status = await baton.sagas.waitFor(id, 20_000);
    expect(status.state).toBe('completed');
    expect(status.steps[0]).toMatchObject({ name: 'mark-cancelled', state: 'completed' });
    const order = await database.db.query('SELECT state FROM orders');
    expect(order.rows).toEqual([{ state: 'cancelled' }]);
  });
});
