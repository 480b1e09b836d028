import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createBaton,
  httpFeedSource,
  InvalidInputError,
  NotFoundError,
  serveHttp,
  TerminalError,
} from '../src/index.ts';
import {
  discardDeadLetters,
  listDeadLetters,
  NotDeadLetterError,
  retryDeadLetters,
  showDeadLetter,
  UndecodableDeadLetterError,
} from '../src/messaging/dead-letters.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { eventually, freshDatabase, SECRET } from './helpers.ts';

/** Inserts inbox rows directly, in the states a consumer leaves them in. */
async function seedInbox(t: TestDatabase): Promise<Record<string, string>> {
  await t.db.query('TRUNCATE baton.inbox, baton.subscriptions');
  await t.db.query(
    `INSERT INTO baton.subscriptions (name, source, cursor) VALUES ('subA', 'svcA', '10'), ('subB', 'svcB', '3')`,
  );
  const rows = [
    [
      'deadA1',
      'subA',
      'dead',
      'order.placed',
      'k1',
      5,
      'Error: boom\n  at line 2 (dead after 5 attempts)',
    ],
    ['deadA2', 'subA', 'dead', 'order.placed', 'k2', 1, 'TerminalError: no'],
    ['pendingA', 'subA', 'pending', 'order.placed', 'k3', 2, 'Error: flaky'],
    ['handledA', 'subA', 'handled', 'order.placed', 'k4', 0, null],
    ['discardedA', 'subA', 'discarded', 'order.placed', 'k5', 3, 'Error: old'],
    ['deadB', 'subB', 'dead', 'order.paid', 'k1', 10, 'Error: later'],
    ['undecodableB', 'subB', 'dead', null, '!undecodable:3', 0, 'line 3 is not JSON'],
  ] as const;
  const ids: Record<string, string> = {};
  for (const [label, sub, status, type, key, attempts, error] of rows) {
    const r = await t.db.query<{ id: string }>(
      `INSERT INTO baton.inbox (subscription, position, event_id, type, key, version, payload, headers,
         occurred_at, source, raw, status, attempts, last_error, next_attempt_at)
       VALUES ($1, $2, CASE WHEN $3::text IS NULL THEN NULL ELSE gen_random_uuid() END, $3, $4,
         CASE WHEN $3::text IS NULL THEN NULL ELSE 7 END,
         CASE WHEN $3::text IS NULL THEN NULL ELSE '{"total": 12.5}'::jsonb END,
         CASE WHEN $3::text IS NULL THEN NULL ELSE '{"trace": "t-1"}'::jsonb END,
         CASE WHEN $3::text IS NULL THEN NULL ELSE now() END,
         CASE WHEN $3::text IS NULL THEN NULL ELSE 'svc' END,
         CASE WHEN $3::text IS NULL THEN '{not json' END,
         $5, $6, $7, now() + interval '1 hour')
       RETURNING id::text`,
      [sub, label, type, key, status, attempts, error],
    );
    ids[label] = r.rows[0]!.id;
  }
  return ids;
}

async function states(t: TestDatabase): Promise<Record<string, string>> {
  const r = await t.db.query<{ position: string; status: string }>(
    'SELECT position, status FROM baton.inbox ORDER BY id',
  );
  return Object.fromEntries(r.rows.map((row) => [row.position, row.status]));
}

describe('dead letters: list, show, retry, discard', () => {
  let t: TestDatabase;
  let ids: Record<string, string>;
  beforeAll(async () => {
    t = await freshDatabase('dead_letters');
  });
  beforeEach(async () => {
    ids = await seedInbox(t);
  });
  afterAll(async () => {
    await t?.drop();
  });

  it('lists dead letters oldest first, by subscription, up to a limit, with the total', async () => {
    const all = await listDeadLetters(t.db);
    expect(all.total).toBe(4);
    expect(all.deadLetters.map((d) => d.position)).toEqual([
      'deadA1',
      'deadA2',
      'deadB',
      'undecodableB',
    ]);
    const first = all.deadLetters[0]!;
    expect(first).toMatchObject({
      inboxId: ids.deadA1,
      subscription: 'subA',
      type: 'order.placed',
      key: 'k1',
      attempts: 5,
      lastError: 'Error: boom\n  at line 2 (dead after 5 attempts)',
    });
    expect(first.eventId).toMatch(/^[0-9a-f-]{36}$/);
    expect(Number.isNaN(Date.parse(first.receivedAt))).toBe(false);

    const subB = await listDeadLetters(t.db, { subscription: 'subB', limit: 1 });
    expect(subB.total).toBe(2);
    expect(subB.deadLetters.map((d) => d.position)).toEqual(['deadB']);

    await expect(listDeadLetters(t.db, { subscription: 'subC' })).rejects.toThrow(
      /no subscription named "subC".*"subA", "subB"/,
    );
    await expect(listDeadLetters(t.db, { limit: 0 })).rejects.toBeInstanceOf(InvalidInputError);
  });

  it('pages in numeric id order, also past id 9 (ids compare as numbers, not text)', async () => {
    await t.db.query(
      `INSERT INTO baton.inbox (subscription, position, event_id, type, key, version, payload, headers, occurred_at, source, status, last_error)
       SELECT 'subA', 'bulk' || n, gen_random_uuid(), 'order.placed', 'bulk' || n, 1, '{}', '{}', now(), 'shop', 'dead', 'x'
       FROM generate_series(1, 12) n`,
    );
    const page = await listDeadLetters(t.db, { limit: 6 });
    const numeric = page.deadLetters.map((d) => Number(d.inboxId));
    expect(numeric).toEqual([...numeric].sort((a, b) => a - b));
    expect(page.deadLetters.map((d) => d.position).slice(0, 4)).toEqual([
      'deadA1',
      'deadA2',
      'deadB',
      'undecodableB',
    ]);
    await t.db.query("DELETE FROM baton.inbox WHERE position LIKE 'bulk%'");
  });

  it('shows everything stored about one entry, and names an unknown id', async () => {
    const d = await showDeadLetter(t.db, ids.deadA1!);
    expect(d).toMatchObject({
      inboxId: ids.deadA1,
      status: 'dead',
      version: 7,
      source: 'svc',
      payload: { total: 12.5 },
      headers: { trace: 't-1' },
      raw: null,
      handledAt: null,
    });
    const undecodable = await showDeadLetter(t.db, Number(ids.undecodableB));
    expect(undecodable).toMatchObject({ type: null, eventId: null, raw: '{not json' });
    const pending = await showDeadLetter(t.db, ids.pendingA!);
    expect(pending.status).toBe('pending');

    await expect(showDeadLetter(t.db, '987654')).rejects.toThrow('no dead letter with id 987654');
    await expect(showDeadLetter(t.db, '987654')).rejects.toBeInstanceOf(NotFoundError);
    await expect(showDeadLetter(t.db, '12abc')).rejects.toBeInstanceOf(InvalidInputError);
    await expect(showDeadLetter(t.db, '99999999999999999999')).rejects.toBeInstanceOf(
      InvalidInputError,
    );
  });

  it('retries dead letters by id: pending, attempts 0, due now, last error kept', async () => {
    const result = await retryDeadLetters(t.db, { ids: [ids.deadA1!, ids.deadB!, ids.deadA1!] });
    expect(result).toEqual({ retried: [ids.deadA1, ids.deadB], skipped: [] });
    const r = await t.db.query<{
      position: string;
      status: string;
      attempts: number;
      due: boolean;
      last_error: string;
    }>(
      `SELECT position, status, attempts, next_attempt_at <= now() AS due, last_error
       FROM baton.inbox WHERE id = ANY($1::bigint[]) ORDER BY id`,
      [[ids.deadA1, ids.deadB]],
    );
    expect(r.rows).toEqual([
      {
        position: 'deadA1',
        status: 'pending',
        attempts: 0,
        due: true,
        last_error: 'Error: boom\n  at line 2 (dead after 5 attempts)',
      },
      { position: 'deadB', status: 'pending', attempts: 0, due: true, last_error: 'Error: later' },
    ]);
    expect((await listDeadLetters(t.db)).total).toBe(2);
  });

  it('refuses ids that are not dead letters, all or nothing, naming each id and state', async () => {
    const before = await states(t);
    const notDead = retryDeadLetters(t.db, {
      ids: [ids.deadA1!, ids.pendingA!, ids.handledA!, ids.discardedA!],
    });
    await expect(notDead).rejects.toBeInstanceOf(NotDeadLetterError);
    await expect(notDead).rejects.toThrow(
      new RegExp(
        `inbox entry ${ids.pendingA} is pending.*inbox entry ${ids.handledA} is handled.*inbox entry ${ids.discardedA} is discarded`,
      ),
    );
    await expect(retryDeadLetters(t.db, { ids: [ids.deadA1!, '424242'] })).rejects.toThrow(
      'no dead letter with id 424242',
    );
    const undecodable = retryDeadLetters(t.db, { ids: [ids.deadB!, ids.undecodableB!] });
    await expect(undecodable).rejects.toBeInstanceOf(UndecodableDeadLetterError);
    await expect(discardDeadLetters(t.db, [ids.deadA2!, ids.handledA!])).rejects.toThrow(
      `inbox entry ${ids.handledA} is handled`,
    );
    await expect(discardDeadLetters(t.db, ['424242'])).rejects.toBeInstanceOf(NotFoundError);
    await expect(retryDeadLetters(t.db, { ids: [] })).rejects.toBeInstanceOf(InvalidInputError);
    expect(await states(t)).toEqual(before);
  });

  it('retries all dead letters of one subscription, skipping undecodable input', async () => {
    const subB = await retryDeadLetters(t.db, { all: true, subscription: 'subB' });
    expect(subB).toEqual({ retried: [ids.deadB], skipped: [ids.undecodableB] });
    expect(await states(t)).toMatchObject({ deadA1: 'dead', deadA2: 'dead', deadB: 'pending' });
    const rest = await retryDeadLetters(t.db, { all: true });
    expect(rest).toEqual({ retried: [ids.deadA1, ids.deadA2], skipped: [ids.undecodableB] });
    expect((await listDeadLetters(t.db)).deadLetters.map((d) => d.position)).toEqual([
      'undecodableB',
    ]);
    await expect(retryDeadLetters(t.db, { all: true, subscription: 'nope' })).rejects.toThrow(
      'no subscription named "nope"',
    );
  });

  it('discards dead letters, undecodable ones included; discarding twice is refused', async () => {
    expect(await discardDeadLetters(t.db, [ids.deadA2!, ids.undecodableB!])).toEqual([
      ids.deadA2,
      ids.undecodableB,
    ]);
    expect(await states(t)).toMatchObject({
      deadA1: 'dead',
      deadA2: 'discarded',
      undecodableB: 'discarded',
    });
    await expect(discardDeadLetters(t.db, [ids.deadA2!])).rejects.toThrow(
      `inbox entry ${ids.deadA2} is discarded`,
    );
  });
});

describe('dead letters with a running consumer', () => {
  let producerDb: TestDatabase;
  let consumerDb: TestDatabase;
  beforeAll(async () => {
    producerDb = await freshDatabase('dlq_producer');
    consumerDb = await freshDatabase('dlq_consumer');
    await consumerDb.db.query(
      'CREATE TABLE applied (n serial PRIMARY KEY, key text NOT NULL, version int NOT NULL)',
    );
  });
  afterAll(async () => {
    await producerDb?.drop();
    await consumerDb?.drop();
  });

  it('a retried dead letter is handled before the later events of its key; a discarded one unblocks them', async () => {
    const producer = createBaton({ db: producerDb.db, service: 'shop' });
    const consumerBaton = createBaton({ db: consumerDb.db, service: 'billing' });
    const relay = producer.relay({ pollIntervalMs: 50 });
    const feed = producer.feedHandler({ auth: { type: 'hmac', secrets: [SECRET] } });
    const server = await serveHttp((req, signal) => feed.handle(req, signal));
    // Version 1 of every key fails for good until the "deployment" below fixes it.
    let fixed = false;
    const consumer = consumerBaton
      .consumer({
        name: 'billing-from-shop',
        source: httpFeedSource({
          name: 'shop',
          url: `${server.url}/baton`,
          auth: { type: 'hmac', secret: SECRET },
        }),
        fetchWaitMs: 200,
        onDeadLetter: 'block-key',
      })
      .subscribe('order.changed', async (event, tx) => {
        if (event.version === 1 && !fixed) throw new TerminalError(`cannot bill ${event.key}`);
        await tx.query('INSERT INTO applied (key, version) VALUES ($1, $2)', [
          event.key,
          event.version,
        ]);
      });
    const applied = async (key: string) =>
      (
        await consumerDb.db.query<{ version: number }>(
          'SELECT version FROM applied WHERE key = $1 ORDER BY n',
          [key],
        )
      ).rows.map((r) => r.version);
    await relay.start();
    await consumer.start();
    try {
      for (const key of ['retry-me', 'discard-me']) {
        for (let v = 1; v <= 2; v++) {
          await producerDb.db.transaction((tx) =>
            producer.publish(tx, { type: 'order.changed', key, payload: { v } }),
          );
        }
      }
      let dead: Awaited<ReturnType<typeof listDeadLetters>> | undefined;
      await eventually(async () => {
        const received = await consumerDb.db.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM baton.inbox',
        );
        dead = await listDeadLetters(consumerDb.db, { subscription: 'billing-from-shop' });
        return received.rows[0]?.n === 4 && dead.total === 2;
      }, 'all four events received, version 1 of both keys dead');
      const byKey = new Map(dead!.deadLetters.map((d) => [d.key, d]));
      expect(byKey.get('retry-me')?.lastError).toMatch(/TerminalError: cannot bill retry-me/);
      // block-key: version 2 waits behind its dead letter.
      const pendingBehind = await consumerDb.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM baton.inbox WHERE status = 'pending' AND version = 2`,
      );
      expect(pendingBehind.rows[0]?.n).toBe(2);
      expect(await applied('retry-me')).toEqual([]);

      fixed = true;
      await retryDeadLetters(consumerDb.db, { ids: [byKey.get('retry-me')!.inboxId] });
      await eventually(
        async () => (await applied('retry-me')).length === 2,
        'retried key handled without a restart',
      );
      expect(await applied('retry-me')).toEqual([1, 2]);

      await discardDeadLetters(consumerDb.db, [byKey.get('discard-me')!.inboxId]);
      await eventually(
        async () => (await applied('discard-me')).length === 1,
        'event behind the discarded dead letter handled',
      );
      expect(await applied('discard-me')).toEqual([2]);
      expect((await listDeadLetters(consumerDb.db)).total).toBe(0);
    } finally {
      await consumer.stop();
      await relay.stop();
      await feed.close();
      await server.close();
    }
  });
});
