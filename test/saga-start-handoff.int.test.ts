import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Baton, createBaton, saga } from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { databaseWith, eventually, freshDatabase } from './helpers.ts';

/*
 * An unkeyed saga started next to an idle worker loop is leased to that
 * worker by the start's own INSERT and run without a claim — and the loop
 * does not claim after it either, unless something may have become due since
 * its last empty claim. Keyed sagas, and starts that create nothing, go
 * through the claim as before. The claims are
 * counted on the wire (the claim is the only statement with SKIP LOCKED).
 */
describe('a saga started next to an idle worker', () => {
  let database: TestDatabase;
  let baton: Baton;
  let worker: SagaWorker;
  let claims = 0;
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });

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
      saga('held', async (ctx) => {
        await ctx.step('wait', async () => {
          await held;
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

  it('runs an unkeyed saga without any claim; a keyed one is claimed', async () => {
    await baton.sagas.start('note', {}, { id: 'unkeyed' });
    await eventually(async () => (await row('unkeyed'))?.state === 'completed', 'unkeyed done');
    // nothing was left to claim when the loop last looked, and no start came
    // without a hand-off since: the loop idles after the run, without a claim
    await claimsReach(1, 'no look for more work after a handed-over run');
    expect(await row('unkeyed')).toEqual({ state: 'completed', fence: '1', runs: 1 });

    await baton.sagas.start('note', {}, { id: 'keyed', key: 'k1' });
    await eventually(async () => (await row('keyed'))?.state === 'completed', 'keyed done');
    // a keyed start is claimed; a claim that found a saga looks again after its run
    await claimsReach(3, 'the claim that ran it and the look after the run');
    expect(await row('keyed')).toEqual({ state: 'completed', fence: '1', runs: 1 });

    // A start that creates nothing hands the loop nothing: it looks once, finds nothing.
    expect(await baton.sagas.start('note', {}, { id: 'unkeyed' })).toEqual({
      id: 'unkeyed',
      created: false,
    });
    await claimsReach(4, 'one look for work');
    expect(claims).toBe(4);
    expect(await notes()).toBe(2);
  });

  it('a start while every loop is busy is claimed as soon as a loop is free, not at the next poll', async () => {
    await baton.sagas.start('held', {}, { id: 'busy' });
    await eventually(async () => (await row('busy'))?.state === 'running', 'busy running');
    const before = claims;
    // no idle loop: the saga is inserted unleased, and the worker is told work may be due
    await baton.sagas.start('note', {}, { id: 'waiting' });
    expect((await row('waiting'))?.fence).toBe('0');
    release();
    // the poll is a minute away: only the look after the busy run can find it
    await eventually(
      async () => (await row('waiting'))?.state === 'completed',
      'waiting done',
      5000,
    );
    expect(claims).toBeGreaterThan(before);
  });
});
