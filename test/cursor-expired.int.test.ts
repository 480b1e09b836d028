import { afterEach, describe, expect, it } from 'vitest';
import {
  type Consumer,
  createBaton,
  httpFeedSource,
  resetSubscriptionCursor,
} from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { eventually, freshDatabase, SECRET } from './helpers.ts';
import { baton } from './support/baton-cli.ts';
import { startService, type TestService } from './support/services.ts';

/*
 * A running consumer whose producer pruned past its cursor: the feed answers
 * 410. An operator then moves the cursor — by SQL, or with Baton's reset —
 * and the consumer must pick it up within a few seconds, without a restart
 * (it used to wait 60 s before asking again, and never re-read its cursor).
 * Real producer (relay + HTTP feed on loopback), real consumer database.
 */

/** How long a running consumer may take to notice a moved cursor. */
const BOUND_MS = 10_000;
const SUBSCRIPTION = 'orders-from-shop';

interface Stuck {
  producer: TestService;
  consumerDb: TestDatabase;
  consumer: Consumer;
  /** The cursor the producer refused. */
  cursor: string;
  /** The producer's pruned_through: the oldest position it still serves in full. */
  oldest: string;
}

let open: Stuck | undefined;
afterEach(async () => {
  await open?.consumer.stop();
  await open?.producer.stop();
  await open?.consumerDb.drop();
  open = undefined;
});

async function publish(producer: TestService, keys: readonly string[]): Promise<void> {
  for (const key of keys) {
    await producer.database.db.transaction((tx) =>
      producer.baton.publish(tx, { type: 'order.placed', key, payload: {} }),
    );
  }
}

async function handled(db: TestDatabase): Promise<string[]> {
  const r = await db.db.query<{ key: string }>('SELECT key FROM handled ORDER BY n');
  return r.rows.map((row) => row.key);
}

async function storedCursor(db: TestDatabase): Promise<string | null> {
  const r = await db.db.query<{ cursor: string | null }>(
    'SELECT cursor FROM baton.subscriptions WHERE name = $1',
    [SUBSCRIPTION],
  );
  return r.rows[0]?.cursor ?? null;
}

/**
 * A consumer that read 2 events, was stopped, missed 3 that the producer then
 * pruned, and runs again: its every fetch now gets 410.
 */
async function stuckConsumer(options: { fetchWaitMs?: number } = {}): Promise<Stuck> {
  const producer = await startService('expired_producer');
  const consumerDb = await freshDatabase('expired_consumer');
  await consumerDb.db.query(
    'CREATE TABLE handled (n bigserial PRIMARY KEY, key text NOT NULL, event_id uuid UNIQUE)',
  );
  const consumer = createBaton({ db: consumerDb.db, service: 'orders' })
    .consumer({
      name: SUBSCRIPTION,
      source: httpFeedSource({
        name: producer.name,
        url: `${producer.server.url}/baton`,
        auth: { type: 'hmac', secret: SECRET },
      }),
      fetchWaitMs: options.fetchWaitMs ?? 300,
    })
    .subscribe('order.placed', async (event, tx) => {
      await tx.query('INSERT INTO handled (key, event_id) VALUES ($1, $2)', [event.key, event.id]);
    });
  open = { producer, consumerDb, consumer, cursor: '', oldest: '' };

  await publish(producer, ['read-1', 'read-2']);
  await consumer.start();
  await eventually(async () => (await handled(consumerDb)).length === 2, 'the first 2 handled');
  await consumer.stop();
  const cursor = (await storedCursor(consumerDb)) ?? '0';

  await publish(producer, ['lost-1', 'lost-2', 'lost-3']);
  const lastSeq = async () =>
    (
      await producer.database.db.query<{ last: string; pruned: string }>(
        'SELECT last_seq::text AS last, pruned_through::text AS pruned FROM baton.relay_state',
      )
    ).rows[0]!;
  const all = (BigInt(cursor) + 3n).toString();
  await eventually(async () => (await lastSeq()).last === all, 'the lost events sequenced');
  const pruner = producer.baton.relay({ retentionMs: 0, pruneIntervalMs: 0 });
  await eventually(async () => {
    await pruner.pruneIfDue();
    return (await lastSeq()).pruned === all;
  }, 'the producer pruned past the cursor');
  const oldest = all;

  await consumer.start();
  open = { producer, consumerDb, consumer, cursor, oldest };
  return open;
}

describe('a running consumer whose producer pruned past its cursor (410)', () => {
  it('records in its subscription row that it is stuck, and where the feed now starts', async () => {
    const s = await stuckConsumer();
    await eventually(
      async () => {
        const r = await s.consumerDb.db.query<{
          expired_cursor: string | null;
          oldest_retained: string | null;
          cursor_expired_at: Date | null;
        }>(
          'SELECT expired_cursor, oldest_retained, cursor_expired_at FROM baton.subscriptions WHERE name = $1',
          [SUBSCRIPTION],
        );
        const row = r.rows[0];
        return (
          row?.expired_cursor === s.cursor &&
          row.oldest_retained === s.oldest &&
          row.cursor_expired_at !== null
        );
      },
      'the 410 recorded with the refused cursor and the oldest retained position',
      BOUND_MS,
    );
  });

  it('resumes within seconds when an operator moves its cursor by SQL', async () => {
    const s = await stuckConsumer();
    await new Promise((r) => setTimeout(r, 500)); // let it hit the 410
    await publish(s.producer, ['after-1', 'after-2']);
    await s.consumerDb.db.query('UPDATE baton.subscriptions SET cursor = $2 WHERE name = $1', [
      SUBSCRIPTION,
      s.oldest,
    ]);
    await eventually(
      async () => (await handled(s.consumerDb)).length === 4,
      'the events after the reset handled by the running consumer',
      BOUND_MS,
    );
    expect(await handled(s.consumerDb)).toEqual(['read-1', 'read-2', 'after-1', 'after-2']);
  });

  it('resumes within seconds when moved on with `baton consumers reset --to-oldest --yes`, the gap recorded', async () => {
    const s = await stuckConsumer();
    await eventually(
      async () =>
        (
          await baton(['consumers', 'list', '--json'], { BATON_DATABASE_URL: s.consumerDb.url })
        ).stdout.includes(`"oldestRetained": "${s.oldest}"`),
      'the consumer recorded the oldest retained position',
      BOUND_MS,
    );
    await publish(s.producer, ['after-1', 'after-2']);
    const reset = await baton(['consumers', 'reset', SUBSCRIPTION, '--to-oldest', '--yes'], {
      BATON_DATABASE_URL: s.consumerDb.url,
    });
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout).toContain(`from ${s.cursor} to ${s.oldest}`);
    await eventually(
      async () => (await handled(s.consumerDb)).length === 4,
      'the events after the reset handled by the running consumer',
      BOUND_MS,
    );
    expect(await handled(s.consumerDb)).toEqual(['read-1', 'read-2', 'after-1', 'after-2']);
    const loss = await s.consumerDb.db.query(
      'SELECT from_position, to_position FROM baton.data_loss WHERE subscription = $1',
      [SUBSCRIPTION],
    );
    expect(loss.rows).toEqual([{ from_position: s.cursor, to_position: s.oldest }]);
  });

  it('a reset cuts a long-poll short: moved back by resetSubscriptionCursor, it re-reads at once, each event handled once', async () => {
    const s = await stuckConsumer({ fetchWaitMs: 25_000 });
    await s.consumerDb.db.query('UPDATE baton.subscriptions SET cursor = $2 WHERE name = $1', [
      SUBSCRIPTION,
      s.oldest,
    ]);
    await publish(s.producer, ['after-1', 'after-2']);
    await eventually(async () => (await handled(s.consumerDb)).length === 4, 'caught up', BOUND_MS);
    const end = await storedCursor(s.consumerDb);
    // Caught up and inside a 25 s long-poll: only the reset's NOTIFY can make it look within the bound.
    await new Promise((r) => setTimeout(r, 1_000));
    const reset = await resetSubscriptionCursor(s.consumerDb.db, SUBSCRIPTION, { to: s.oldest });
    expect(reset).toMatchObject({
      from: end,
      direction: 'backward',
      applied: true,
      dataLoss: null,
    });
    expect(reset.warnings.join(' ')).toContain('read again');
    await eventually(
      async () => (await storedCursor(s.consumerDb)) === end,
      'the consumer re-read the events after the moved-back cursor',
      BOUND_MS,
    );
    // Read twice, handled once: the inbox still holds them.
    expect(await handled(s.consumerDb)).toEqual(['read-1', 'read-2', 'after-1', 'after-2']);
  });
});
