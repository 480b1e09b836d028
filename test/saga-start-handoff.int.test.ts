import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Baton, createBaton, saga } from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { databaseWith, eventually, freshDatabase } from './helpers.ts';

/*
 * An unkeyed saga started next to an idle worker loop is leased to that
 * worker by the start's own INSERT and run without a claim. Keyed sagas, and
 * starts that create nothing, go through the claim as before. The claims are
 * counted on the wire (the claim is the only statement with SKIP LOCKED).
 */
describe('a saga started next to an idle worker', () => {
  let database: TestDatabase;
  let baton: Baton;
  let worker: SagaWorker;
  let claims = 0;

  beforeAll(async () => {
    database = await freshDatabase('saga_handoff');
    const real = database.db;
    const counting = databaseWith(real, {
      query: (text, values) => {
        if (text.includes('FOR UPDATE SKIP LOCKED')) claims++;
        return real.query(text, values);
      },
    });
    baton = createBaton({ db: counting, service: 'orders' });
    await real.query('CREATE TABLE notes (saga_id text PRIMARY KEY)');
    baton.sagas.define(
      saga('note', async (ctx) => {
        await ctx.step('write', async (tx) => {
          await tx.query('INSERT INTO notes VALUES ($1)', [ctx.sagaId]);
        });
      }),
    );
    // One loop, and an idle poll far away: every claim below is one the test caused.
    worker = baton.sagas.worker({ concurrency: 1, pollIntervalMs: 60_000 });
    worker.start();
    await claimsReach(1, 'the loop’s first look for work');
  });
  afterAll(async () => {
    await worker?.stop();
    await database?.drop();
  });

  /** Waits until `n` claims were sent and answered (the loop is idle again after an empty one). */
  async function claimsReach(n: number, what: string): Promise<void> {
    await eventually(async () => claims >= n, what);
    await new Promise((r) => setTimeout(r, 300));
    expect(claims, what).toBe(n);
  }

  const row = async (id: string) =>
    (
      await database.db.query<{ state: string; fence: string; runs: number }>(
        'SELECT state, fence::text, runs FROM baton.sagas WHERE id = $1',
        [id],
      )
    ).rows[0];
  const notes = async () =>
    Number((await database.db.query('SELECT count(*) AS n FROM notes')).rows[0]?.n);

  it('runs an unkeyed saga without claiming it; a keyed one is claimed', async () => {
    await baton.sagas.start('note', {}, { id: 'unkeyed' });
    await eventually(async () => (await row('unkeyed'))?.state === 'completed', 'unkeyed done');
    // after the run the loop looks for more work once (one claim), then idles
    await claimsReach(2, 'the loop’s look for more work after the run');
    expect(await row('unkeyed')).toEqual({ state: 'completed', fence: '1', runs: 1 });

    await baton.sagas.start('note', {}, { id: 'keyed', key: 'k1' });
    await eventually(async () => (await row('keyed'))?.state === 'completed', 'keyed done');
    await claimsReach(4, 'the claim that ran it and the look after the run');
    expect(await row('keyed')).toEqual({ state: 'completed', fence: '1', runs: 1 });

    // A start that creates nothing hands the loop nothing: it looks once, finds nothing.
    expect(await baton.sagas.start('note', {}, { id: 'unkeyed' })).toEqual({
      id: 'unkeyed',
      created: false,
    });
    await claimsReach(5, 'one look for work');
    expect(claims).toBe(5);
    expect(await notes()).toBe(2);
  });
});
