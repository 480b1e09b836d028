import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Baton, createBaton, NotFoundError, saga, TerminalError } from '../src/index.ts';
import { PgDatabase } from '../src/pg.ts';
import {
  abortSaga,
  listSagas,
  retrySaga,
  SagaStateError,
  SagasNotInstalledError,
  showSaga,
} from '../src/sagas/saga-admin.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import { readStatus } from '../src/status.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { eventually, freshDatabase } from './helpers.ts';

/**
 * The operator's saga functions against real sagas run by a real worker:
 * stuck sagas made by a compensation that keeps failing, retried and
 * aborted; fencing of a worker that still holds an aborted saga.
 */
describe('saga admin: list, show, retry, abort', () => {
  let t: TestDatabase;
  let baton: Baton;
  let worker: SagaWorker;
  /** While true, the compensation of step `reserve-table` throws. */
  let compensationBroken = true;
  /** Gates a step so the test can act while a worker holds the saga. */
  const gates = new Map<string, () => void>();
  const entered = new Set<string>();

  beforeAll(async () => {
    t = await freshDatabase('saga_admin');
    await t.db.query(
      `CREATE TABLE tables_held (saga_id text PRIMARY KEY, state text NOT NULL);
       CREATE TABLE effects (id serial PRIMARY KEY, saga_id text NOT NULL, what text NOT NULL);`,
    );
    baton = createBaton({ db: t.db, service: 'restaurant' });
    const booking = saga<{ fail?: boolean; sleepMs?: number; gate?: boolean }, string>(
      'book-dinner',
      async (ctx, input) => {
        await ctx.step(
          'reserve-table',
          async (tx) => {
            if (input.gate) {
              entered.add(ctx.sagaId);
              await new Promise<void>((resolve) => gates.set(ctx.sagaId, resolve));
            }
            await tx.query(`INSERT INTO tables_held VALUES ($1, 'held')`, [ctx.sagaId]);
            await tx.query(`INSERT INTO effects (saga_id, what) VALUES ($1, 'reserve')`, [
              ctx.sagaId,
            ]);
          },
          {
            compensate: async (tx) => {
              if (compensationBroken) throw new Error('the table service is down');
              await tx.query(`UPDATE tables_held SET state = 'released' WHERE saga_id = $1`, [
                ctx.sagaId,
              ]);
              await tx.query(`INSERT INTO effects (saga_id, what) VALUES ($1, 'release')`, [
                ctx.sagaId,
              ]);
            },
          },
        );
        if (input.sleepMs) await ctx.sleep('wait-for-guests', input.sleepMs);
        await ctx.step('charge-deposit', async () => {
          if (input.fail) throw new TerminalError('card declined');
        });
        return 'booked';
      },
      { maxCompensationAttempts: 2, compensationBackoff: { baseMs: 10, maxMs: 20 } },
    );
    baton.sagas.define(booking);
    worker = baton.sagas.worker({ concurrency: 2, pollIntervalMs: 20 });
    worker.start();
  });
  afterAll(async () => {
    for (const release of gates.values()) release();
    await worker?.stop();
    await t?.drop();
  });

  const waitForState = (id: string, state: string) =>
    eventually(async () => (await showSaga(t.db, id)).state === state, `saga ${id} ${state}`);
  const effects = async (id: string) =>
    (
      await t.db.query<{ what: string }>(
        'SELECT what FROM effects WHERE saga_id = $1 ORDER BY id',
        [id],
      )
    ).rows.map((r) => r.what);

  it('a compensation failing past its bound makes the saga stuck; show tells steps, attempts and errors', async () => {
    compensationBroken = true;
    await baton.sagas.start('book-dinner', { fail: true }, { id: 'stuck-1', key: 'table-7' });
    await waitForState('stuck-1', 'stuck');
    const detail = await showSaga(t.db, 'stuck-1');
    expect(detail).toMatchObject({
      id: 'stuck-1',
      name: 'book-dinner',
      key: 'table-7',
      state: 'stuck',
      stuckFrom: 'compensating',
      leaseOwner: null,
      input: { fail: true },
    });
    expect(detail.error).toMatch(/reserve-table/);
    expect(detail.steps.map((s) => [s.name, s.kind, s.state, s.attempts])).toEqual([
      ['reserve-table', 'local', 'completed', 1],
      ['charge-deposit', 'local', 'failed', 1],
    ]);
    const reserve = detail.steps[0];
    expect(reserve?.compensationAttempts).toBe(2);
    expect(reserve?.lastError).toMatch(/the table service is down/);
    expect(reserve?.completedAt).not.toBeNull();
    expect(detail.steps[1]?.lastError).toMatch(/card declined/);
    // The steps come from one statement as JSON: each time as a Date read from its column writes it.
    const columns = await t.db.query<Record<string, Date | null>>(
      `SELECT started_at, completed_at, compensated_at, retry_at, wait_until
       FROM baton.saga_steps WHERE saga_id = 'stuck-1' ORDER BY ordinal`,
    );
    const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);
    expect(
      detail.steps.map((s) => [
        s.startedAt,
        s.completedAt,
        s.compensatedAt,
        s.retryAt,
        s.waitUntil,
      ]),
    ).toEqual(
      columns.rows.map((c) => [
        iso(c.started_at),
        iso(c.completed_at),
        iso(c.compensated_at),
        iso(c.retry_at),
        iso(c.wait_until),
      ]),
    );
  });

  it('retry resumes the stuck phase with attempts from 0: stuck again while broken, compensated once fixed', async () => {
    const again = await retrySaga(t.db, 'stuck-1');
    expect(again).toMatchObject({
      id: 'stuck-1',
      from: 'stuck',
      to: 'compensating',
      stepsReset: ['reserve-table'],
    });
    // Still broken: two fresh attempts, then stuck again (not at once: the count was reset).
    await waitForState('stuck-1', 'stuck');
    expect((await showSaga(t.db, 'stuck-1')).steps[0]?.compensationAttempts).toBe(2);
    compensationBroken = false;
    await retrySaga(t.db, 'stuck-1');
    await waitForState('stuck-1', 'compensated');
    expect(await effects('stuck-1')).toEqual(['reserve', 'release']);
    const done = await showSaga(t.db, 'stuck-1');
    expect(done.steps[0]?.state).toBe('compensated');
    expect(done.finishedAt).not.toBeNull();
  });

  it('retry and abort refuse other states and unknown ids, saying why and changing nothing', async () => {
    await baton.sagas.start('book-dinner', {}, { id: 'done-1' });
    await waitForState('done-1', 'completed');
    const before = await showSaga(t.db, 'done-1');
    await expect(retrySaga(t.db, 'done-1')).rejects.toThrow(
      /cannot retry saga done-1: it is completed/,
    );
    await expect(abortSaga(t.db, 'done-1', 'no')).rejects.toBeInstanceOf(SagaStateError);
    await expect(retrySaga(t.db, 'stuck-1')).rejects.toThrow(/it is compensated/);
    await expect(showSaga(t.db, 'nope')).rejects.toBeInstanceOf(NotFoundError);
    await expect(retrySaga(t.db, 'nope')).rejects.toThrow(/no saga with id "nope"/);
    await expect(abortSaga(t.db, 'done-1', '  ')).rejects.toThrow(/needs a reason/);
    expect(await showSaga(t.db, 'done-1')).toEqual(before);
  });

  it('abort of a running saga compensates its completed steps in reverse, once', async () => {
    compensationBroken = false;
    await baton.sagas.start('book-dinner', { sleepMs: 600_000 }, { id: 'sleepy-1' });
    await eventually(
      async () => (await showSaga(t.db, 'sleepy-1')).waitingFor === 'timer wait-for-guests',
      'sleepy-1 sleeping',
    );
    const change = await abortSaga(t.db, 'sleepy-1', 'guests cancelled');
    expect(change).toMatchObject({ from: 'running', to: 'compensating' });
    await waitForState('sleepy-1', 'compensated');
    const detail = await showSaga(t.db, 'sleepy-1');
    expect(detail.error).toBe('aborted by an operator: guests cancelled');
    expect(detail.steps.map((s) => `${s.name}:${s.state}`)).toEqual([
      'reserve-table:compensated',
      'wait-for-guests:pending',
    ]);
    expect(await effects('sleepy-1')).toEqual(['reserve', 'release']);
  });

  it('abort fences out the worker holding the saga: its next write is refused, nothing runs twice', async () => {
    compensationBroken = false;
    await baton.sagas.start('book-dinner', { gate: true, sleepMs: 600_000 }, { id: 'held-1' });
    await eventually(async () => entered.has('held-1'), 'held-1 inside its first step');
    const leased = await showSaga(t.db, 'held-1');
    expect(leased.leaseOwner).toBe(worker.id);
    // The local step's transaction holds the saga row: abort waits for it to commit, then fences.
    // The operator's own connection, so the test can see it wait.
    const operator = new PgDatabase({
      connectionString: t.url,
      max: 1,
      applicationName: 'operator',
    });
    const aborting = abortSaga(operator, 'held-1', 'operator says no');
    // Open the gate only once the abort waits for the row lock (a fixed pause raced under load:
    // the old run got to its next write before the abort had fenced it).
    await eventually(async () => {
      const r = await t.db.query(
        "SELECT 1 FROM pg_stat_activity WHERE application_name = 'operator' AND wait_event_type = 'Lock'",
      );
      return r.rows.length > 0;
    }, 'the abort waiting for the saga row');
    gates.get('held-1')?.();
    const change = await aborting.finally(() => operator.close());
    expect(change.fence).toBeGreaterThan(leased.fence);
    await waitForState('held-1', 'compensated');
    const detail = await showSaga(t.db, 'held-1');
    // The old run's timer record may land before the abort takes the row (PostgreSQL does
    // not queue a locker behind a waiter when the row's last locker has committed): a
    // pending timer then, never a completed step; every write after the fence is refused.
    const steps = detail.steps.map((s) => `${s.name}:${s.state}`);
    expect(steps[0]).toBe('reserve-table:compensated');
    expect(steps.slice(1).every((s) => s === 'wait-for-guests:pending')).toBe(true);
    expect(await effects('held-1')).toEqual(['reserve', 'release']);
  });

  it('abort is refused while completing or stuck while completing; a stuck compensation can be aborted', async () => {
    const s = 'baton';
    await t.db.query(
      `INSERT INTO ${s}.sagas (id, name, input, state, wake_at) VALUES
         ('confirming-1', 'not-run-here', '{}', 'completing', now() + interval '1 hour');
       INSERT INTO ${s}.sagas (id, name, input, state, stuck_from, error) VALUES
         ('stuck-confirm-1', 'not-run-here', '{}', 'stuck', 'completing', 'confirm of spend-points failed 10 times'),
         ('stuck-comp-1', 'not-run-here', '{}', 'stuck', 'compensating', 'compensation of a failed 10 times');
       INSERT INTO ${s}.saga_steps (saga_id, name, kind, ordinal, state, compensation_attempts, last_error) VALUES
         ('stuck-comp-1', 'a', 'call', 1, 'completed', 10, 'HTTP 503');`,
    );
    await expect(abortSaga(t.db, 'confirming-1', 'x')).rejects.toThrow(
      /it is completing: .*confirms must finish/,
    );
    await expect(abortSaga(t.db, 'stuck-confirm-1', 'x')).rejects.toThrow(
      /stuck while confirming .* cannot be aborted.*baton sagas retry/,
    );
    const aborted = await abortSaga(t.db, 'stuck-comp-1', 'give up');
    expect(aborted).toMatchObject({ from: 'stuck', to: 'compensating', stepsReset: ['a'] });
    const detail = await showSaga(t.db, 'stuck-comp-1');
    expect(detail).toMatchObject({ state: 'compensating', stuckFrom: null });
    expect(detail.error).toBe(
      'aborted by an operator: give up (was stuck: compensation of a failed 10 times)',
    );
    expect(detail.steps[0]?.compensationAttempts).toBe(0);
    const retried = await retrySaga(t.db, 'stuck-confirm-1');
    expect(retried).toMatchObject({ from: 'stuck', to: 'completing' });
  });

  it('list filters by state and name, newest first, with the total; status counts and names the stuck', async () => {
    await t.db.query(
      `INSERT INTO baton.sagas (id, name, input, state, stuck_from, error, created_at) VALUES
         ('old-stuck', 'book-dinner', '{}', 'stuck', 'compensating', 'compensation of reserve-table failed', now() - interval '1 hour')`,
    );
    const all = await listSagas(t.db, { limit: 2 });
    expect(all.total).toBe(8);
    expect(all.sagas).toHaveLength(2);
    const stuck = await listSagas(t.db, { state: 'stuck' });
    expect(stuck.sagas.map((x) => x.id)).toEqual(['old-stuck']);
    const named = await listSagas(t.db, { name: 'book-dinner', state: 'compensated' });
    expect(named.sagas.map((x) => x.id)).toEqual(['held-1', 'sleepy-1', 'stuck-1']);
    await expect(listSagas(t.db, { state: 'lost' })).rejects.toThrow(/unknown saga state "lost"/);

    const status = await readStatus(t.db);
    expect(status.sagas.installed).toBe(true);
    expect(status.sagas.counts).toEqual({
      running: 0,
      completing: 2,
      compensating: 1,
      completed: 1,
      compensated: 3,
      stuck: 1,
    });
    expect(status.sagas.stuck.items).toEqual([
      expect.objectContaining({
        id: 'old-stuck',
        stuckFrom: 'compensating',
        error: 'compensation of reserve-table failed',
      }),
    ]);
    expect(status.sagas.oldestActive?.id).toBe('confirming-1');
  });

  it('works on a database without the saga tables: status says not installed, admin says run migrate', async () => {
    const old = await freshDatabase('saga_admin_m2');
    try {
      await old.db.query(
        'DROP TABLE baton.saga_steps, baton.sagas, baton.saga_keys, baton.barrier, baton.idempotency_keys; DELETE FROM baton.migrations WHERE id >= 3',
      );
      const status = await readStatus(old.db);
      expect(status.sagas).toMatchObject({ installed: false, oldestActive: null });
      expect(status.sagas.counts.stuck).toBe(0);
      await expect(listSagas(old.db)).rejects.toBeInstanceOf(SagasNotInstalledError);
      await expect(retrySaga(old.db, 'x')).rejects.toThrow(/migration 3 is not applied/);
    } finally {
      await old.drop();
    }
  });
});
