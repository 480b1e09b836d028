import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/free-port.ts';
import { loadMigrations } from '../src/db/migrate.ts';
import { readStatus } from '../src/status.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';
import { baton, type Run } from './support/baton-cli.ts';

/**
 * The real `baton` command, run as a child process (`node bin/baton.js`)
 * against a cloned database, as an operator would run it.
 */

function json<T = Record<string, unknown>>(run: Run): T {
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  return JSON.parse(run.stdout) as T;
}

describe('baton CLI', () => {
  let t: TestDatabase;
  let env: Record<string, string>;
  beforeAll(async () => {
    t = await freshDatabase('cli');
    env = { BATON_DATABASE_URL: t.url };
  });
  afterAll(async () => {
    await t?.drop();
  });

  it('lists its commands; usage errors exit 2 and say what to do', async () => {
    const [help, noUrl, badLimit, unknown] = await Promise.all([
      baton(['--help']),
      baton(['status']),
      baton(['dlq', 'list', '--limit', '0'], env),
      baton(['dlq', 'frobnicate'], env),
    ]);
    expect(help.code).toBe(0);
    for (const command of ['migrate', 'status', 'dlq', 'reconcile']) {
      expect(help.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
    }
    expect(noUrl.code).toBe(2);
    expect(noUrl.stdout).toBe('');
    expect(noUrl.stderr).toContain('no database URL: pass --database-url');
    expect(noUrl.stderr).toContain('set BATON_DATABASE_URL');
    expect(badLimit.code).toBe(2);
    expect(badLimit.stderr).toContain("option '--limit <n>' argument '0' is invalid");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('baton --help');
  });

  it('migrates idempotently; --print shows the SQL without a database', async () => {
    const print = await baton(['migrate', '--print', '--schema', 'cli_extra']);
    expect(print.code).toBe(0);
    expect(print.stdout).toContain('CREATE TABLE "cli_extra".outbox');
    expect(print.stdout).toContain('-- migration 000001_messaging');

    const before = await baton(['status', '--schema', 'cli_extra'], env);
    expect(before.code).toBe(1);
    expect(before.stderr).toContain('schema "cli_extra" is not installed');
    expect(before.stderr).toContain('run `baton migrate`');

    const first = json<{ applied: number[]; current: number }>(
      await baton(['migrate', '--schema', 'cli_extra', '--json'], env),
    );
    const shipped = (await loadMigrations()).map((m) => m.id);
    expect(first.applied).toEqual(shipped);
    const second = await baton(['--schema', 'cli_extra', 'migrate'], env);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(
      `schema "cli_extra" is up to date (migration ${shipped.at(-1)})`,
    );
    const recorded = await t.db.query('SELECT id FROM cli_extra.migrations ORDER BY id');
    expect(recorded.rows).toEqual(shipped.map((id) => ({ id })));
  });

  it('names the host and port of an unreachable database, exit 1, no stack unless --verbose', async () => {
    const port = await freePort();
    const url = `postgresql://baton:secret@127.0.0.1:${port}/nowhere`;
    const [plain, verbose] = await Promise.all([
      baton(['status', '--database-url', url]),
      baton(['dlq', 'list', '--verbose'], { DATABASE_URL: url }),
    ]);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain(`cannot connect to PostgreSQL at 127.0.0.1:${port}`);
    expect(plain.stderr).toContain('check the URL given by --database-url');
    expect(plain.stderr).not.toMatch(/^\s+at /m);
    expect(plain.stderr).not.toContain('secret');
    expect(verbose.code).toBe(1);
    expect(verbose.stderr).toContain('the URL given by DATABASE_URL');
    expect(verbose.stderr).toMatch(/ECONNREFUSED[\s\S]*^\s+at /m);
  });

  describe('on a database with a backlog and dead letters', () => {
    const ids: Record<string, string> = {};
    beforeAll(async () => {
      await t.db.query(
        `INSERT INTO baton.outbox (event_id, type, key, version, payload, headers, occurred_at, source)
         SELECT gen_random_uuid(), 'order.placed', 'o' || i, 1, '{}', '{}',
           now() - interval '1 hour' + i * interval '1 minute', 'shop'
         FROM generate_series(0, 2) i`,
      );
      await t.db.query('UPDATE baton.relay_state SET last_seq = 40, pruned_through = 10');
      await t.db.query(
        `INSERT INTO baton.subscriptions (name, source, cursor) VALUES
           ('billing-from-shop', 'shop', '17'), ('mail-from-shop', 'shop', NULL)`,
      );
      const insert = async (label: string, status: string, received: string) => {
        const r = await t.db.query<{ id: string }>(
          `INSERT INTO baton.inbox (subscription, position, event_id, type, key, version, payload,
             headers, occurred_at, source, status, attempts, last_error, received_at)
           VALUES ('billing-from-shop', $1, gen_random_uuid(), 'order.placed', $1, 1,
             '{"amount": 30}', '{"trace": "abc"}', now(), 'shop', $2, 3,
             'Error: card declined\n    at charge (billing.ts:10)', now() - $3::interval)
           RETURNING id::text`,
          [label, status, received],
        );
        ids[label] = r.rows[0]!.id;
      };
      await insert('dead1', 'dead', '2 hours');
      await insert('dead2', 'dead', '1 hour');
      await insert('pending1', 'pending', '10 minutes');
      await insert('handled1', 'handled', '3 hours');
    });

    it('status reports backlog, lag, positions, subscriptions and dead letters', async () => {
      const [asJson, asText] = await Promise.all([
        baton(['status', '--json'], env),
        baton(['status'], env),
      ]);
      const status = json<Awaited<ReturnType<typeof readStatus>>>(asJson);
      expect(status.outbox).toMatchObject({ backlog: 3, lastSequenced: 40, prunedThrough: 10 });
      expect(status.outbox.relayLagSeconds).toBeGreaterThanOrEqual(3600);
      expect(status.deadLetters).toBe(2);
      const latest = (await loadMigrations()).at(-1)?.id;
      expect(status.migrations).toEqual({ applied: latest, latest });
      // No references activity in this database: empty sections, and none printed as problems.
      expect(status.references).toMatchObject({
        installed: true,
        pendingDeletes: { total: 0 },
        quarantine: { total: 0 },
        lastReconcile: null,
      });
      expect(status.subscriptions.map((s) => [s.name, s.cursor, s.pending, s.deadLetters])).toEqual(
        [
          ['billing-from-shop', '17', 1, 2],
          ['mail-from-shop', null, 0, 0],
        ],
      );
      expect(status.subscriptions[0]!.oldestPendingAgeSeconds).toBeGreaterThanOrEqual(600);
      expect(status.subscriptions[1]!.oldestPendingAgeSeconds).toBe(0);
      // The CLI prints what the library reads.
      const direct = await readStatus(t.db);
      expect(direct.subscriptions.map((s) => s.updatedAt)).toEqual(
        status.subscriptions.map((s) => s.updatedAt),
      );

      expect(asText.code).toBe(0);
      expect(asText.stdout).toMatch(/backlog\s+3 unsequenced/);
      expect(asText.stdout).toMatch(/relay lag\s+1h 0m/);
      expect(asText.stdout).toContain('check that a relay is running');
      expect(asText.stdout).toMatch(/^\s+billing-from-shop\s+shop\s+17\s+1\s+10m \d+s\s+2\s/m);
      expect(asText.stdout).toContain('Dead letters: 2');
      expect(asText.stdout).toContain('Last reconcile: never');
    });

    it('dlq list and show print the dead letters and everything stored about one', async () => {
      const [list, show, text] = await Promise.all([
        baton(['dlq', 'list', '--json', '--subscription', 'billing-from-shop'], env),
        baton(['dlq', 'show', ids.dead1!, '--json'], env),
        baton(['dlq', 'show', ids.dead1!], env),
      ]);
      const listed = json<{ total: number; deadLetters: { inboxId: string; attempts: number }[] }>(
        list,
      );
      expect(listed.total).toBe(2);
      expect(listed.deadLetters.map((d) => d.inboxId)).toEqual([ids.dead1, ids.dead2]);
      expect(json(show)).toMatchObject({
        inboxId: ids.dead1,
        status: 'dead',
        attempts: 3,
        lastError: 'Error: card declined\n    at charge (billing.ts:10)',
        payload: { amount: 30 },
        headers: { trace: 'abc' },
      });
      expect(text.stdout).toContain('at charge (billing.ts:10)');
      expect(text.stdout).toContain(`baton dlq retry ${ids.dead1}`);
    });

    it('dlq retry and discard change only dead letters; others fail with exit 1 naming id and state', async () => {
      const [notDead, unknown, unknownShow, badId] = await Promise.all([
        baton(['dlq', 'retry', ids.dead1!, ids.pending1!], env),
        baton(['dlq', 'discard', '999999'], env),
        baton(['dlq', 'show', '999999'], env),
        baton(['dlq', 'retry', 'seven'], env),
      ]);
      expect(notDead.code).toBe(1);
      expect(notDead.stderr).toContain(`inbox entry ${ids.pending1} is pending`);
      expect(notDead.stderr).toContain('nothing was changed');
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain('no dead letter with id 999999');
      expect(unknownShow.code).toBe(1);
      expect(unknownShow.stderr).toContain('no dead letter with id 999999');
      expect(badId.code).toBe(2);
      const status = async (label: string) =>
        (
          await t.db.query<{ status: string; attempts: number; due: boolean }>(
            'SELECT status, attempts, next_attempt_at <= now() AS due FROM baton.inbox WHERE id = $1',
            [ids[label]],
          )
        ).rows[0];
      expect(await status('dead1')).toMatchObject({ status: 'dead', attempts: 3 });

      const [retried, discarded] = await Promise.all([
        baton(['dlq', 'retry', ids.dead1!, '--json'], env),
        baton(['dlq', 'discard', ids.dead2!], env),
      ]);
      expect(json(retried)).toEqual({ retried: [ids.dead1], skipped: [] });
      expect(discarded.code).toBe(0);
      expect(discarded.stdout).toContain(`discarded 1 dead letter: ${ids.dead2}`);
      expect(await status('dead1')).toEqual({ status: 'pending', attempts: 0, due: true });
      expect(await status('dead2')).toMatchObject({ status: 'discarded' });

      const again = await baton(['dlq', 'discard', ids.dead2!, ids.handled1!], env);
      expect(again.code).toBe(1);
      expect(again.stderr).toContain(`inbox entry ${ids.dead2} is discarded`);
      expect(again.stderr).toContain(`inbox entry ${ids.handled1} is handled`);
    });
  });
});
