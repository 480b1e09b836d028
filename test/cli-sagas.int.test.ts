import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SagaChange, SagaDetail, SagaList } from '../src/sagas/saga-admin.ts';
import type { BatonStatus } from '../src/status.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';
import { baton, type Run } from './support/baton-cli.ts';

/**
 * `baton sagas list|show|retry|abort` and the sagas part of `baton status`,
 * run as child processes against a database holding sagas in every state
 * (written as rows: the CLI needs no saga definitions, and no worker runs
 * them, so what the commands change stays visible).
 */

function json<T>(run: Run): T {
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  return JSON.parse(run.stdout) as T;
}

describe('baton sagas, as a child process', () => {
  let t: TestDatabase;
  let env: Record<string, string>;
  beforeAll(async () => {
    t = await freshDatabase('cli_sagas');
    env = { BATON_DATABASE_URL: t.url };
    await t.db.query(
      `INSERT INTO baton.sagas (id, name, key, input, state, stuck_from, error, waiting_for, created_at) VALUES
         ('o-1', 'place-order', 'ada', '{"orderId":"o-1"}', 'completed', NULL, NULL, NULL, now() - interval '5 min'),
         ('o-2', 'place-order', 'bob', '{"orderId":"o-2"}', 'stuck', 'compensating',
            'saga o-2: compensation of step "spend-points" failed 10 times (participant loyalty answered 503)', NULL, now() - interval '4 min'),
         ('o-3', 'place-order', NULL, '{"orderId":"o-3"}', 'running', NULL, NULL, 'retry 2 of step spend-points (HTTP 503)', now() - interval '3 min'),
         ('o-4', 'place-order', NULL, '{"orderId":"o-4"}', 'completing', NULL, NULL, NULL, now() - interval '2 min'),
         ('r-1', 'refund', NULL, '{}', 'stuck', 'completing', 'saga r-1: compensation of step "pay" failed 3 times (x)', NULL, now() - interval '1 min');
       INSERT INTO baton.saga_steps (saga_id, name, kind, ordinal, state, attempts, compensation_attempts, last_error, completed_at) VALUES
         ('o-2', 'create-order', 'local', 1, 'compensated', 1, 0, NULL, now()),
         ('o-2', 'spend-points', 'reserve', 2, 'completed', 1, 10, 'TransportError: participant loyalty answered 503', now()),
         ('o-2', 'accept-order', 'local', 3, 'failed', 1, 0, 'TerminalError: the shop refuses this order', now()),
         ('o-3', 'create-order', 'local', 1, 'completed', 1, 0, NULL, now());
       UPDATE baton.sagas SET wake_at = now() + interval '1 hour' WHERE id IN ('o-3', 'o-4');`,
    );
  });
  afterAll(async () => {
    await t?.drop();
  });

  it('lists sagas newest first, filters by state and name, and refuses a bad state with exit 2', async () => {
    const [human, stuck, refunds, badState, help] = await Promise.all([
      baton(['sagas', 'list'], env),
      baton(['sagas', 'list', '--state', 'stuck', '--json'], env),
      baton(['--json', 'sagas', 'list', '--name', 'refund', '--limit', '1'], env),
      baton(['sagas', 'list', '--state', 'lost'], env),
      baton(['--help']),
    ]);
    expect(human.code).toBe(0);
    const lines = human.stdout.split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+KEY\s+STATE\s+STARTED\s+ERROR \/ WAITING FOR$/);
    expect(lines.slice(1, 6).map((l) => l.split(/\s+/)[0])).toEqual([
      'r-1',
      'o-4',
      'o-3',
      'o-2',
      'o-1',
    ]);
    expect(human.stdout).toMatch(/o-2\s+place-order\s+bob\s+stuck \(compensating\)/);
    expect(human.stdout).toContain('retry 2 of step spend-points (HTTP 503)');
    expect(human.stdout).toContain('5 sagas. Details: `baton sagas show <id>`.');
    const s = json<SagaList>(stuck);
    expect(s.total).toBe(2);
    expect(s.sagas.map((x) => [x.id, x.stuckFrom])).toEqual([
      ['r-1', 'completing'],
      ['o-2', 'compensating'],
    ]);
    expect(json<SagaList>(refunds).sagas.map((x) => x.id)).toEqual(['r-1']);
    expect(badState.code).toBe(2);
    expect(badState.stderr).toContain(
      'expected one of running, completing, compensating, completed, compensated, stuck',
    );
    expect(help.stdout).toMatch(/^ {2}sagas\b/m);
  });

  it('shows one saga with its steps, attempts and errors; an unknown id exits 1', async () => {
    const [human, asJson, unknown] = await Promise.all([
      baton(['sagas', 'show', 'o-2'], env),
      baton(['sagas', 'show', 'o-2', '--json'], env),
      baton(['sagas', 'show', 'o-99'], env),
    ]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^Saga o-2 — stuck \(stuck while compensating\)/);
    expect(human.stdout).toMatch(/spend-points\s+reserve\s+completed\s+1\s+10/);
    expect(human.stdout).toContain(
      'spend-points: last error: TransportError: participant loyalty answered 503',
    );
    expect(human.stdout).toContain(
      'Next: fix the failing compensation, then `baton sagas retry o-2`.',
    );
    const detail = json<SagaDetail>(asJson);
    expect(detail.steps.map((x) => `${x.name}:${x.state}:${x.compensationAttempts}`)).toEqual([
      'create-order:compensated:0',
      'spend-points:completed:10',
      'accept-order:failed:0',
    ]);
    expect(detail.input).toEqual({ orderId: 'o-2' });
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr).toContain('baton: no saga with id "o-99"');
  });

  it('status shows the sagas by state, the stuck ones with their error, and the oldest active', async () => {
    const [human, asJson] = await Promise.all([
      baton(['status'], env),
      baton(['status', '--json'], env),
    ]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('Sagas\n');
    expect(human.stdout).toMatch(/active\s+1 running, 1 completing, 0 compensating/);
    expect(human.stdout).toContain('! 2 sagas are stuck, waiting for an operator:');
    expect(human.stdout).toMatch(
      /o-2\s+place-order\s+compensating\s+.*compensation of step "spend-points"/,
    );
    expect(human.stdout).toMatch(
      /oldest active: o-3 \(place-order, running, started 3m \d+s ago; retry 2/,
    );
    const status = json<BatonStatus>(asJson);
    expect(status.sagas.counts).toEqual({
      running: 1,
      completing: 1,
      compensating: 0,
      completed: 1,
      compensated: 0,
      stuck: 2,
    });
    expect(status.sagas.stuck.items.map((x) => x.id)).toEqual(['o-2', 'r-1']);
  });

  it('retry resumes a stuck saga; abort gives a running one up; wrong states exit 1 and say what to do', async () => {
    const [retried, abortCompleting, abortStuckConfirm, retryRunning] = await Promise.all([
      baton(['sagas', 'retry', 'o-2'], env),
      baton(['sagas', 'abort', 'o-4'], env),
      baton(['sagas', 'abort', 'r-1'], env),
      baton(['sagas', 'retry', 'o-3'], env),
    ]);
    expect(retried.code).toBe(0);
    expect(retried.stdout).toContain(
      'retried saga o-2: stuck → compensating. Compensation attempts reset on spend-points.',
    );
    expect(abortCompleting.code).toBe(1);
    expect(abortCompleting.stderr).toContain('cannot abort saga o-4: it is completing');
    expect(abortCompleting.stderr).toContain('the confirms must finish');
    expect(abortStuckConfirm.code).toBe(1);
    expect(abortStuckConfirm.stderr).toContain('then `baton sagas retry`');
    expect(retryRunning.code).toBe(1);
    expect(retryRunning.stderr).toContain('it is running, not stuck');

    const [aborted, retryAgain] = await Promise.all([
      baton(['sagas', 'abort', 'o-3', '--reason', 'customer called', '--json'], env),
      baton(['sagas', 'retry', 'o-2'], env),
    ]);
    expect(json<SagaChange>(aborted)).toMatchObject({
      id: 'o-3',
      from: 'running',
      to: 'compensating',
    });
    expect(retryAgain.code).toBe(1);
    expect(retryAgain.stderr).toContain('it is compensating, not stuck');
    const rows = await t.db.query<{ id: string; state: string; error: string | null; lease: null }>(
      `SELECT id, state, error, lease_owner AS lease FROM baton.sagas WHERE id IN ('o-2', 'o-3', 'o-4') ORDER BY id`,
    );
    expect(rows.rows).toEqual([
      expect.objectContaining({ id: 'o-2', state: 'compensating' }),
      {
        id: 'o-3',
        state: 'compensating',
        error: 'aborted by an operator: customer called',
        lease: null,
      },
      expect.objectContaining({ id: 'o-4', state: 'completing' }),
    ]);
  });

  it('on a database without the saga tables: sagas commands exit 1 naming the fix, status still works', async () => {
    const old = await freshDatabase('cli_sagas_m2');
    try {
      await old.db.query(
        'DROP TABLE baton.saga_steps, baton.sagas, baton.saga_keys, baton.barrier, baton.idempotency_keys; DELETE FROM baton.migrations WHERE id >= 3',
      );
      const oldEnv = { BATON_DATABASE_URL: old.url };
      const [list, status] = await Promise.all([
        baton(['sagas', 'list'], oldEnv),
        baton(['status'], oldEnv),
      ]);
      expect(list.code).toBe(1);
      expect(list.stderr).toContain('migration 3 is not applied');
      expect(list.stderr).toContain('run `baton migrate`');
      expect(status.code).toBe(0);
      expect(status.stdout).not.toContain('Sagas');
      expect(status.stdout).toContain('run `baton migrate`');
    } finally {
      await old.drop();
    }
  });
});
