import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type Baton,
  type BatonEvent,
  createBaton,
  type FeedHandler,
  httpFeedSource,
  type RunningServer,
  serveHttp,
} from '../src/index.ts';
import { PgDatabase } from '../src/pg.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { eventually, freshDatabase, SECRET } from './helpers.ts';
import {
  backendPid,
  closeClients,
  feedProblems,
  isWaitingOnLock,
  openClients,
  perKeyVersionProblems,
  readOutbox,
  resetProducer,
} from './support/ordering-outbox.ts';
import {
  FeedReader,
  ORDERING_TYPE,
  relayUntil,
  runPublisher,
  thing,
} from './support/ordering-publishers.ts';
import { seededRandom } from './support/ordering-random.ts';

/*
 * The relay must never skip and never reorder a key. Each case drives
 * dedicated connections by hand, so transactions commit in exactly the order
 * that breaks a relay reading the outbox by insertion id; relay passes run at
 * chosen moments (no background loop) except in the racing and consumer cases.
 */

async function xid(client: pg.Client): Promise<bigint> {
  const r = await client.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid');
  return BigInt(r.rows[0]!.xid);
}

function only<T>(events: readonly T[]): T {
  expect(events).toHaveLength(1);
  return events[0]!;
}

describe('relay ordering under out-of-order commits', () => {
  let producerDb: TestDatabase;
  let producer: Baton;
  let clients: pg.Client[];
  let feed: FeedHandler;
  let server: RunningServer;

  const source = () =>
    httpFeedSource({
      name: 'things',
      url: `${server.url}/baton`,
      auth: { type: 'hmac', secret: SECRET },
    });

  beforeAll(async () => {
    producerDb = await freshDatabase('relay_ordering');
    producer = createBaton({ db: producerDb.db, service: 'things' });
    clients = await openClients(producerDb.url, 4);
    feed = producer.feedHandler({ auth: { type: 'hmac', secrets: [SECRET] } });
    server = await serveHttp((req, signal) => feed.handle(req, signal));
  });
  afterAll(async () => {
    await server?.close();
    await feed?.close();
    await closeClients(clients ?? []);
    await producerDb?.drop();
  });
  beforeEach(async () => {
    // A test that failed half way may have left a transaction open.
    for (const c of clients) await c.query('ROLLBACK');
    await resetProducer(producerDb.db);
  });

  it('a: a transaction that commits after a later one is sequenced later, not skipped', async () => {
    const [t1, t2] = clients as [pg.Client, pg.Client];
    const relay = producer.relay();
    await t1.query('BEGIN');
    const a = only(await producer.publish(t1, thing('A')));
    await t2.query('BEGIN');
    const b = only(await producer.publish(t2, thing('B')));
    await t2.query('COMMIT');

    expect(await relay.runOnce()).toBe(1);
    expect(await readOutbox(producerDb.db)).toMatchObject([{ eventId: b.id, seq: 1 }]);
    expect(await relay.runOnce()).toBe(0);

    await t1.query('COMMIT');
    expect(await relay.runOnce()).toBe(1);
    const rows = await readOutbox(producerDb.db);
    expect(rows.map((r) => [r.eventId, r.seq])).toEqual([
      [b.id, 1],
      [a.id, 2],
    ]);
    // A really was inserted first: commit order, not insertion order, decided its position.
    expect(rows[1]!.id).toBeLessThan(rows[0]!.id);
    expect(feedProblems(rows)).toEqual([]);
  });

  it('b: a transaction with an early xid publishing a key after another commits gets the later version and position', async () => {
    const [t1, t2] = clients as [pg.Client, pg.Client];
    const relay = producer.relay();
    await t1.query('BEGIN');
    const xid1 = await xid(t1);
    await t2.query('BEGIN');
    const xid2 = await xid(t2);
    expect(xid1).toBeLessThan(xid2);
    const v1 = only(await producer.publish(t2, thing('K')));
    await t2.query('COMMIT');
    expect(await relay.runOnce()).toBe(1);

    const v2 = only(await producer.publish(t1, thing('K')));
    expect([v1.version, v2.version]).toEqual([1, 2]);
    expect(await relay.runOnce()).toBe(0);
    await t1.query('COMMIT');
    expect(await relay.runOnce()).toBe(1);

    const rows = await readOutbox(producerDb.db);
    expect(rows.map((r) => [r.eventId, r.version, r.seq])).toEqual([
      [v1.id, 1, 1],
      [v2.id, 2, 2],
    ]);
    expect(feedProblems(rows)).toEqual([]);
  });

  it('b: an early-xid publisher blocked on the key lock of an open transaction follows it', async () => {
    const [t1, t2] = clients as [pg.Client, pg.Client];
    const relay = producer.relay();
    await t1.query('BEGIN');
    await xid(t1);
    // T1 also publishes another key first: its row has the lowest id of all.
    const x = only(await producer.publish(t1, thing('X')));
    await t2.query('BEGIN');
    const v1 = only(await producer.publish(t2, thing('K')));
    const blocked = producer.publish(t1, thing('K'));
    await eventually(
      () => isWaitingOnLock(producerDb.db, backendPid(t1)),
      'T1 waits for the lock on key K held by T2',
    );
    expect(await relay.runOnce()).toBe(0);

    await t2.query('COMMIT');
    const v2 = only(await blocked);
    expect([v1.version, v2.version]).toEqual([1, 2]);
    expect(await relay.runOnce()).toBe(1);
    await t1.query('COMMIT');
    expect(await relay.runOnce()).toBe(2);

    const rows = await readOutbox(producerDb.db);
    expect(rows.map((r) => [r.eventId, r.seq])).toEqual([
      [v1.id, 1],
      [x.id, 2],
      [v2.id, 3],
    ]);
    expect(feedProblems(rows)).toEqual([]);
  });

  it('b: when the transaction holding the key lock rolls back, the waiter takes its version', async () => {
    const [t1, t2] = clients as [pg.Client, pg.Client];
    const relay = producer.relay();
    await t1.query('BEGIN');
    await xid(t1);
    await t2.query('BEGIN');
    only(await producer.publish(t2, thing('K')));
    const blocked = producer.publish(t1, thing('K'));
    await eventually(
      () => isWaitingOnLock(producerDb.db, backendPid(t1)),
      'T1 waits for the lock on key K held by T2',
    );
    await t2.query('ROLLBACK');
    const v = only(await blocked);
    expect(v.version).toBe(1);
    await t1.query('COMMIT');
    expect(await relay.runOnce()).toBe(1);
    const rows = await readOutbox(producerDb.db);
    expect(rows.map((r) => [r.eventId, r.version, r.seq])).toEqual([[v.id, 1, 1]]);
  });

  it('c: a pass sequences the committed version of a key and leaves the open one for later, in order', async () => {
    const [t1, t2] = clients as [pg.Client, pg.Client];
    // One row per pass: batch limits must not change the order either.
    const relay = producer.relay({ batchSize: 1 });
    const v1 = only(await producerDb.db.transaction((tx) => producer.publish(tx, thing('K'))));
    await t1.query('BEGIN');
    const v2 = only(await producer.publish(t1, thing('K')));
    await t2.query('BEGIN');
    const v3Pending = producer.publish(t2, thing('K'));
    await eventually(
      () => isWaitingOnLock(producerDb.db, backendPid(t2)),
      'T2 waits for the lock on key K held by T1',
    );
    const l1 = only(await producerDb.db.transaction((tx) => producer.publish(tx, thing('L'))));

    expect(await relay.runOnce()).toBe(1);
    expect(await relay.runOnce()).toBe(1);
    expect(await relay.runOnce()).toBe(0);
    expect((await readOutbox(producerDb.db)).map((r) => [r.eventId, r.seq])).toEqual([
      [v1.id, 1],
      [l1.id, 2],
    ]);

    await t1.query('COMMIT');
    const v3 = only(await v3Pending);
    expect([v1.version, v2.version, v3.version]).toEqual([1, 2, 3]);
    expect(await relay.runOnce()).toBe(1);
    expect(await relay.runOnce()).toBe(0);
    await t2.query('COMMIT');
    expect(await relay.runOnce()).toBe(1);

    const rows = await readOutbox(producerDb.db);
    expect(rows.map((r) => [r.eventId, r.seq])).toEqual([
      [v1.id, 1],
      [l1.id, 2],
      [v2.id, 3],
      [v3.id, 4],
    ]);
    expect(feedProblems(rows)).toEqual([]);
  });

  it('d: two relays racing four publishers hand out each committed event exactly one position, gap-free, in key order', async () => {
    const seed = Date.now() >>> 0;
    const secondDb = new PgDatabase({ connectionString: producerDb.url, max: 2 });
    const second = createBaton({ db: secondDb, service: 'things' });
    const relays = [producer.relay({ batchSize: 4 }), second.relay({ batchSize: 3 })];
    const reader = new FeedReader(source(), 4);
    const keys = ['k1', 'k2', 'k3', 'k4', 'k5', 'k6'];
    let publishing = true;
    try {
      const relayRuns = relays.map((r) => relayUntil(r, () => !publishing, seededRandom(seed + 1)));
      const reading = reader.readUntil(() => !publishing, seededRandom(seed + 2));
      const published = await Promise.all(
        clients.map((client, i) =>
          runPublisher({
            client,
            baton: producer,
            keys,
            transactions: 40,
            random: seededRandom(seed + 10 + i),
          }),
        ),
      ).finally(() => {
        publishing = false;
      });
      let numbered = (await Promise.all(relayRuns)).reduce((a, b) => a + b, 0);
      await reading;
      for (const relay of relays) {
        let n: number;
        do {
          n = await relay.runOnce();
          numbered += n;
        } while (n > 0);
      }
      await reader.drain();

      const committed = published.flat();
      const rows = await readOutbox(producerDb.db);
      const why = `seed ${seed}`;
      expect(committed.length, why).toBeGreaterThan(0);
      expect(numbered, why).toBe(committed.length);
      expect(new Set(rows.map((r) => r.eventId)), why).toEqual(new Set(committed.map((e) => e.id)));
      expect(feedProblems(rows), why).toEqual([]);
      // The reader, always reading strictly after its cursor, saw everything, once, in order.
      expect(reader.problems, why).toEqual([]);
      expect(
        reader.events.map((e) => e.id),
        why,
      ).toEqual(rows.map((r) => r.eventId));
      expect(
        reader.events.map((e) => Number(e.position)),
        why,
      ).toEqual(rows.map((_, i) => i + 1));
      expect(perKeyVersionProblems(reader.events), why).toEqual([]);
    } finally {
      publishing = false;
      await secondDb.close();
    }
  });

  describe('e: consumer side', () => {
    let consumerDb: TestDatabase;
    beforeAll(async () => {
      consumerDb = await freshDatabase('relay_ordering_consumer');
      await consumerDb.db.query(
        'CREATE TABLE seen (at bigserial PRIMARY KEY, event_id uuid NOT NULL, key text NOT NULL, version int NOT NULL)',
      );
    });
    afterAll(async () => {
      await consumerDb?.drop();
    });

    it('e: the feed and a running consumer give each key its versions in steps of one', async () => {
      const seed = Date.now() >>> 0;
      const why = `seed ${seed}`;
      const relay = producer.relay({ pollIntervalMs: 20, batchSize: 5 });
      const consumer = createBaton({ db: consumerDb.db, service: 'watcher' })
        .consumer({
          name: 'watcher-from-things',
          source: source(),
          fetchWaitMs: 200,
          batchSize: 7,
          handleBatchSize: 4,
          concurrency: 3,
        })
        .subscribe(ORDERING_TYPE, async (event, tx) => {
          await tx.query('INSERT INTO seen (event_id, key, version) VALUES ($1, $2, $3)', [
            event.id,
            event.key,
            event.version,
          ]);
        });
      await relay.start();
      await consumer.start();
      let committed: BatonEvent[] = [];
      try {
        const published = await Promise.all(
          clients.slice(0, 3).map((client, i) =>
            runPublisher({
              client,
              baton: producer,
              keys: ['p', 'q', 'r', 's'],
              transactions: 30,
              random: seededRandom(seed + i),
            }),
          ),
        );
        committed = published.flat();
        await eventually(async () => {
          const r = await consumerDb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM seen');
          return r.rows[0]?.n === committed.length;
        }, `all ${committed.length} committed events handled (${why})`);
      } finally {
        await consumer.stop();
        await relay.stop();
      }

      const seen = await consumerDb.db.query<{ event_id: string; key: string; version: number }>(
        'SELECT event_id::text, key, version FROM seen ORDER BY at',
      );
      expect(new Set(seen.rows.map((r) => r.event_id)).size, why).toBe(committed.length);
      expect(perKeyVersionProblems(seen.rows), why).toEqual([]);

      // The raw feed, read page by page, also steps each key by one.
      const reader = new FeedReader(source(), 3);
      await reader.drain();
      expect(reader.problems, why).toEqual([]);
      expect(reader.events, why).toHaveLength(committed.length);
      expect(perKeyVersionProblems(reader.events), why).toEqual([]);
    });
  });
});
