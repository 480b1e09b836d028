import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  channelsFor,
  InvalidInputError,
  NoOldestRetainedError,
  NotFoundError,
  resetSubscriptionCursor,
  type SubscriptionStatus,
} from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';
import { baton, type Run } from './support/baton-cli.ts';

/**
 * `baton consumers list|reset`, run as the real command against a cloned
 * database whose subscriptions are written as consumers leave them: one
 * stuck (its producer refused cursor 5 and serves from 12 on), one reading,
 * with pending, dead and blocked inbox entries.
 */

function json<T = Record<string, unknown>>(run: Run): T {
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  return JSON.parse(run.stdout) as T;
}

async function seed(t: TestDatabase): Promise<void> {
  await t.db.query('TRUNCATE baton.inbox, baton.subscriptions, baton.data_loss');
  await t.db.query(
    `INSERT INTO baton.subscriptions (name, source, cursor, expired_cursor, cursor_expired_at, oldest_retained)
     VALUES ('orders-from-shop', 'shop', '5', '5', now() - interval '5 minutes', '12'),
            ('mail-from-shop', 'shop', '40', NULL, NULL, NULL),
            ('moved-from-shop', 'shop', '20', '8', now() - interval '1 hour', '15')`,
  );
  // mail-from-shop: key k1 has a dead letter with two entries behind it; k2 flows.
  await t.db.query(
    `INSERT INTO baton.inbox (subscription, position, event_id, type, key, version, payload, headers,
       occurred_at, source, status, attempts)
     SELECT 'mail-from-shop', p::text, gen_random_uuid(), 'order.placed', k, p, '{}', '{}', now(), 'shop', s, a
     FROM (VALUES (31, 'k1', 'dead', 3), (32, 'k1', 'pending', 0), (33, 'k2', 'pending', 0),
                  (34, 'k1', 'pending', 0)) v(p, k, s, a)`,
  );
}

async function subscriptionRow(t: TestDatabase, name: string) {
  const r = await t.db.query<{ cursor: string | null }>(
    'SELECT cursor FROM baton.subscriptions WHERE name = $1',
    [name],
  );
  return r.rows[0];
}

async function dataLoss(t: TestDatabase) {
  const r = await t.db.query<{
    subscription: string;
    from_position: string;
    to_position: string;
    reason: string;
    reconciled_at: Date | null;
  }>('SELECT subscription, from_position, to_position, reason, reconciled_at FROM baton.data_loss');
  return r.rows;
}

describe('baton consumers', () => {
  let t: TestDatabase;
  let env: Record<string, string>;
  beforeAll(async () => {
    t = await freshDatabase('cli_consumers');
    env = { BATON_DATABASE_URL: t.url };
  });
  beforeEach(async () => {
    await seed(t);
  });
  afterAll(async () => {
    await t?.drop();
  });

  it('list shows cursors, the stuck one with its oldest retained position, blocked keys, what to do', async () => {
    const [asJson, asText] = await Promise.all([
      baton(['consumers', 'list', '--json'], env),
      baton(['consumers', 'list'], env),
    ]);
    const { subscriptions } = json<{ subscriptions: SubscriptionStatus[] }>(asJson);
    expect(subscriptions.map((s) => s.name)).toEqual([
      'mail-from-shop',
      'moved-from-shop',
      'orders-from-shop',
    ]);
    const [mail, moved, orders] = subscriptions;
    expect(mail).toMatchObject({
      cursor: '40',
      stuck: null,
      pending: 3,
      deadLetters: 1,
      blockedKeys: 1,
      blockedEntries: 2,
      dataLoss: [],
    });
    // Refused at cursor 8, but the cursor has moved on since: not stuck any more.
    expect(moved).toMatchObject({ cursor: '20', stuck: null });
    expect(orders).toMatchObject({
      cursor: '5',
      stuck: { cursor: '5', oldestRetained: '12' },
    });

    expect(asText.code).toBe(0);
    expect(asText.stdout).toMatch(/^orders-from-shop\s+shop\s+5\s+stuck \(serves from 12\)/m);
    expect(asText.stdout).toMatch(/^mail-from-shop\s+shop\s+40\s+reading\s+3\s+1\s+1\s+2\s+0$/m);
    expect(asText.stdout).toMatch(
      /^! orders-from-shop is stuck \(for 5m \d+s\): its producer shop pruned the events after cursor 5 before it read them, and serves from position 12 on\.$/m,
    );
    expect(asText.stdout).toContain('`baton consumers reset orders-from-shop --to-oldest --yes`');
  });

  it('reset --to-oldest without --yes shows the move and changes nothing (exit 2)', async () => {
    const dry = await baton(['consumers', 'reset', 'orders-from-shop', '--to-oldest'], env);
    expect(dry.code).toBe(2);
    expect(dry.stdout).toContain(
      'would move the cursor of "orders-from-shop" from 5 to 12 (not done: add --yes)',
    );
    expect(dry.stdout).toContain('the events after 5 up to 12 are never read by this subscription');
    expect(dry.stderr).toContain('nothing was changed');
    expect(dry.stderr).toContain('run the same command with --yes');
    expect(await subscriptionRow(t, 'orders-from-shop')).toEqual({ cursor: '5' });
    expect(await dataLoss(t)).toEqual([]);
  });

  it('reset --to-oldest --yes moves on, records the gap as data loss, NOTIFYs the consumer; status shows the gap', async () => {
    const listener = new pg.Client({ connectionString: t.url });
    await listener.connect();
    const notified: string[] = [];
    listener.on('notification', (m) => notified.push(`${m.channel}:${m.payload}`));
    await listener.query(`LISTEN "${channelsFor('baton').cursor}"`);
    try {
      const reset = await baton(
        ['consumers', 'reset', 'orders-from-shop', '--to-oldest', '--yes'],
        env,
      );
      expect(reset.code).toBe(0);
      expect(reset.stderr).toBe('');
      expect(reset.stdout).toContain('moved the cursor of "orders-from-shop" from 5 to 12');
      expect(reset.stdout).toContain(
        'the events after 5 up to 12 are never read by this subscription',
      );
      expect(reset.stdout).toContain('The gap must be reconciled: `baton reconcile --repair`');
      expect(reset.stdout).toContain('other events in the gap are lost to this subscription');
      expect(await subscriptionRow(t, 'orders-from-shop')).toEqual({ cursor: '12' });
      const [loss] = await dataLoss(t);
      expect(loss).toMatchObject({
        subscription: 'orders-from-shop',
        from_position: '5',
        to_position: '12',
        reconciled_at: null,
      });
      expect(loss?.reason).toMatch(/^cursor moved by an operator \(.*oldest retained position 12/);
      await new Promise((r) => setTimeout(r, 200));
      expect(notified).toEqual([`${channelsFor('baton').cursor}:orders-from-shop`]);
    } finally {
      await listener.end();
    }

    const [list, status] = await Promise.all([
      baton(['consumers', 'list', '--json'], env),
      baton(['status'], env),
    ]);
    const orders = json<{ subscriptions: SubscriptionStatus[] }>(list).subscriptions.find(
      (s) => s.name === 'orders-from-shop',
    );
    expect(orders).toMatchObject({
      cursor: '12',
      stuck: null,
      dataLoss: [{ fromPosition: '5', toPosition: '12' }],
    });
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(
      "! orders-from-shop: 1 range of shop's feed never read, not reconciled:",
    );
    expect(status.stdout).toContain('! mail-from-shop: 2 entries wait behind 1 blocked key');
  });

  it('status shows a stuck subscription and what to do', async () => {
    const status = await baton(['status'], env);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('! orders-from-shop is stuck');
    expect(status.stdout).toContain('baton consumers reset orders-from-shop --to-oldest --yes');
  });

  it('reset backward warns that events are read again, records no loss; JSON says what it did', async () => {
    const back = json<Record<string, unknown>>(
      await baton(['consumers', 'reset', 'mail-from-shop', '--to', '30', '--yes', '--json'], env),
    );
    expect(back).toMatchObject({
      subscription: 'mail-from-shop',
      from: '40',
      to: '30',
      direction: 'backward',
      applied: true,
      dataLoss: null,
    });
    expect(String(back.warnings)).toContain('read again');
    expect(await dataLoss(t)).toEqual([]);
    const again = await baton(['consumers', 'reset', 'mail-from-shop', '--to', '030'], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('the cursor of "mail-from-shop" is already at 30');
    const text = await baton(['consumers', 'reset', 'mail-from-shop', '--to', '10', '--yes'], env);
    expect(text.stdout).toContain('moved the cursor of "mail-from-shop" back from 30 to 10');
    expect(text.stdout).toContain('! the events after 10 up to 30 are read again');
  });

  it('bad input: usage errors exit 2, a wrong subscription or a missing position exit 1, each saying what to do', async () => {
    const [noTarget, both, badPosition, negative, unknown, neverRefused, movedSince] =
      await Promise.all([
        baton(['consumers', 'reset', 'orders-from-shop'], env),
        baton(['consumers', 'reset', 'orders-from-shop', '--to-oldest', '--to', '7'], env),
        baton(['consumers', 'reset', 'orders-from-shop', '--to', 'abc', '--yes'], env),
        baton(['consumers', 'reset', 'orders-from-shop', '--to', '-3', '--yes'], env),
        baton(['consumers', 'reset', 'orders-from-shopp', '--to-oldest', '--yes'], env),
        baton(['consumers', 'reset', 'mail-from-shop', '--to-oldest', '--yes'], env),
        baton(['consumers', 'reset', 'moved-from-shop', '--to-oldest', '--yes'], env),
      ]);
    expect(noTarget.code).toBe(2);
    expect(noTarget.stderr).toContain('say where to: --to-oldest');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('give --to-oldest or --to <position>, not both');
    expect(badPosition.code).toBe(2);
    expect(badPosition.stderr).toContain(
      'position "abc" is not a feed position: give a whole number',
    );
    expect(negative.code).toBe(2);
    expect(negative.stderr).toContain('position "-3" is not a feed position');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(
      'no subscription named "orders-from-shopp" in this database: known subscriptions are "mail-from-shop", "moved-from-shop", "orders-from-shop"',
    );
    expect(neverRefused.code).toBe(1);
    expect(neverRefused.stderr).toContain(
      `cannot move subscription "mail-from-shop" to its producer's oldest retained position: none is recorded`,
    );
    expect(neverRefused.stderr).toContain('give the position (--to <position>)');
    expect(movedSince.code).toBe(1);
    expect(movedSince.stderr).toContain('the one recorded was for cursor 8');
    for (const run of [unknown, neverRefused, movedSince]) expect(run.stdout).toBe('');
    // Nothing moved, nothing recorded.
    expect(await subscriptionRow(t, 'orders-from-shop')).toEqual({ cursor: '5' });
    expect(await dataLoss(t)).toEqual([]);
  });

  it('resetSubscriptionCursor: the same rules as a function, typed errors, a dry run', async () => {
    await expect(
      resetSubscriptionCursor(t.db, 'orders-from-shop', { to: '1.5' }),
    ).rejects.toBeInstanceOf(InvalidInputError);
    await expect(resetSubscriptionCursor(t.db, 'nope', { toOldest: true })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    await expect(
      resetSubscriptionCursor(t.db, 'mail-from-shop', { toOldest: true }),
    ).rejects.toBeInstanceOf(NoOldestRetainedError);
    const dry = await resetSubscriptionCursor(
      t.db,
      'orders-from-shop',
      { to: 20n },
      { dryRun: true },
    );
    expect(dry).toMatchObject({ from: '5', to: '20', direction: 'forward', applied: false });
    expect(dry.dataLoss).toMatchObject({ id: null, fromPosition: '5', toPosition: '20' });
    expect(await subscriptionRow(t, 'orders-from-shop')).toEqual({ cursor: '5' });

    // Back before what the producer still serves: allowed, with a warning it will be refused again.
    const before = await resetSubscriptionCursor(
      t.db,
      'orders-from-shop',
      { to: 3 },
      { note: 'test' },
    );
    expect(before.warnings.join(' ')).toContain('serves from position 12 on');
    const forward = await resetSubscriptionCursor(
      t.db,
      'orders-from-shop',
      { to: '9' },
      { note: 'ticket OPS-7' },
    );
    expect(forward.dataLoss?.reason).toBe(
      'cursor moved by an operator (to position 9; ticket OPS-7)',
    );
    expect(forward.dataLoss?.id).toMatch(/^[0-9]+$/);
  });
});
