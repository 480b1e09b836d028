import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NatsCluster, startNatsCluster } from '../examples/shop/nats-cluster.ts';
import {
  type Baton,
  createBaton,
  listSubscriptions,
  resetSubscriptionCursor,
} from '../src/index.ts';
import type { Consumer } from '../src/messaging/consumer.ts';
import type { Relay } from '../src/messaging/relay.ts';
import { natsSource, natsTransport, streamName, subjectFor } from '../src/nats.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { encodeEventLine } from '../src/transports/http-feed/wire-format.ts';
import { StreamReader } from '../src/transports/nats/stream-reader.ts';
import { eventually, freshDatabase, untilReady } from './helpers.ts';

/*
 * NATS JetStream as the transport (issue 14), on a real 3-node cluster on
 * loopback with file storage: a producer's relay publishes to its stream,
 * a consumer in another database reads it into its inbox. While events flow,
 * one node — whichever — is killed and started again: every event is handled
 * exactly once in effect, each key's events in version order.
 */
const KEYS = 20;

describe('NATS JetStream transport on a 3-node cluster', () => {
  let cluster: NatsCluster;
  let producerDb: TestDatabase;
  let consumerDb: TestDatabase;
  let producerNc: NatsConnection;
  let consumerNc: NatsConnection;
  let relay: Relay;
  let consumer: Consumer;
  let published = 0;
  let producer: Baton;

  beforeAll(async () => {
    cluster = await startNatsCluster(3);
    [producerDb, consumerDb] = await Promise.all([
      freshDatabase('nats_producer'),
      freshDatabase('nats_consumer'),
    ]);
    // Reconnects for ever (a node may be down); waits for the cluster's JetStream to be up.
    const options = { servers: cluster.servers, maxReconnectAttempts: -1, reconnectTimeWait: 100 };
    producerNc = await connect(options);
    consumerNc = await connect(options);
    producer = createBaton({ db: producerDb.db, service: 'producer' });
    const transport = await untilReady(() =>
      natsTransport({ connection: producerNc, service: 'producer' }),
    );
    relay = producer.relay({ transport, pollIntervalMs: 20 });
    await relay.start();

    await consumerDb.db.query(`CREATE TABLE effects (
      event_id uuid PRIMARY KEY, key text NOT NULL, version int NOT NULL, n int NOT NULL DEFAULT 1,
      handled bigserial)`);
    const consuming = createBaton({ db: consumerDb.db, service: 'consumer' });
    consumer = consuming.consumer({
      name: 'consumer-from-producer',
      source: await natsSource({ connection: consumerNc, service: 'producer' }),
      fetchWaitMs: 1_000,
      // Small batches: a repaired copy lands at the end of the stream, well past one fetch.
      batchSize: 20,
      backoff: { baseMs: 20, maxMs: 200 },
    });
    consumer.subscribe('thing.made', async (event, tx) => {
      // A second run of the handler for one event would show as n = 2.
      await tx.query(
        `INSERT INTO effects (event_id, key, version) VALUES ($1, $2, $3)
         ON CONFLICT (event_id) DO UPDATE SET n = effects.n + 1`,
        [event.id, event.key, event.version],
      );
    });
    await consumer.start();
  }, 120_000);

  afterAll(async () => {
    await consumer?.stop();
    await relay?.stop();
    await producerNc?.close();
    await consumerNc?.close();
    await cluster?.stop();
    await producerDb?.drop();
    await consumerDb?.drop();
  });

  /** Batches of 10 events, one transaction each, spread over the keys. */
  async function publish(batches: number) {
    for (let b = 0; b < batches; b++) {
      await producerDb.db.transaction((tx) =>
        producer.publish(
          tx,
          Array.from({ length: 10 }, (_, i) => ({
            type: 'thing.made',
            key: `k${(published + i) % KEYS}`,
            payload: { n: published + i },
          })),
        ),
      );
      published += 10;
    }
  }

  async function expectAllHandledOnceInOrder() {
    await eventually(
      async () =>
        (await consumerDb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM effects')).rows[0]
          ?.n === published,
      `all ${published} events handled`,
      60_000,
    );
    const twice = await consumerDb.db.query('SELECT event_id FROM effects WHERE n > 1');
    expect(twice.rowCount, 'no event handled twice').toBe(0);
    const order = await consumerDb.db.query<{ key: string; versions: number[] }>(
      'SELECT key, array_agg(version ORDER BY handled) AS versions FROM effects GROUP BY key',
    );
    for (const { key, versions } of order.rows)
      expect(versions, `${key} in version order, none missing`).toEqual(
        versions.map((_, i) => i + 1),
      );
  }

  it('carries events from the relay to the inbox, once each, per key in order', async () => {
    await publish(20);
    await expectAllHandledOnceInOrder();
  });

  for (const node of [0, 1, 2])
    it(`loses nothing and duplicates nothing when node ${node + 1} is killed under load`, async () => {
      const load = publish(60);
      await new Promise((r) => setTimeout(r, 300));
      await cluster.kill(node);
      await new Promise((r) => setTimeout(r, 1_500));
      await cluster.start(node);
      await load;
      await expectAllHandledOnceInOrder();
    });

  /** Waits until the relay has numbered and dispatched every published event. */
  async function untilDispatched() {
    await eventually(async () => {
      const r = await producerDb.db.query<{ last: string; dispatched: string }>(
        'SELECT last_seq AS last, dispatched_through AS dispatched FROM baton.relay_state',
      );
      return Number(r.rows[0]?.last) === published && r.rows[0]?.dispatched === r.rows[0]?.last;
    }, 'every event dispatched');
  }
  const STREAM = streamName('producer');

  it('finds messages deleted from the stream — in the middle and at the end — and has them sent again from the outbox', async () => {
    await consumer.stop();
    await publish(5);
    await untilDispatched();
    const jsm = await jetstreamManager(producerNc);
    // The stream answers again once its leader is elected (a node was just restarted): wait for it.
    const last = await untilReady(async () => (await jsm.streams.info(STREAM)).state.last_seq);
    // Behind Baton's back: two in the middle (their copies will land 30 messages on, past
    // what one fetch reads), and the last two (nothing after them shows the gap).
    for (const seq of [last - 30, last - 29, last - 1, last])
      expect(await jsm.streams.deleteMessage(STREAM, seq)).toBe(true);
    await consumer.start();
    await expectAllHandledOnceInOrder();
  });

  // Last: it loses three events for good.
  it('reports what the outbox no longer holds as an expired cursor, and goes on past it only when an operator says so', async () => {
    await consumer.stop();
    const handledBefore = published;
    // Twenty events of keys of their own (one version each), so a lost one breaks no key's order.
    await producerDb.db.transaction((tx) =>
      producer.publish(
        tx,
        Array.from({ length: 20 }, (_, i) => ({
          type: 'thing.made',
          key: `once-${i}`,
          payload: {},
        })),
      ),
    );
    published += 20;
    await untilDispatched();
    const jsm = await jetstreamManager(producerNc);
    // The stream answers again once its leader is elected (a node was just restarted): wait for it.
    const last = await untilReady(async () => (await jsm.streams.info(STREAM)).state.last_seq);
    // The stream loses the 3rd to 5th of them; the outbox has pruned them too.
    for (const seq of [last - 17, last - 16, last - 15])
      await jsm.streams.deleteMessage(STREAM, seq);
    const lost = published - 15;
    await producerDb.db.query(
      `DELETE FROM baton.outbox WHERE seq BETWEEN ${lost - 2} AND ${lost};
       UPDATE baton.relay_state SET pruned_through = ${lost}`,
    );
    await consumer.start();
    const status = async () =>
      (await listSubscriptions(consumerDb.db)).find((x) => x.name === 'consumer-from-producer');
    await eventually(
      async () => (await status())?.stuck != null,
      'the loss reported',
      30_000,
    ).catch(async (error) => {
      const row = await consumerDb.db.query('SELECT * FROM baton.subscriptions');
      const n = await consumerDb.db.query('SELECT count(*) FROM effects');
      throw new Error(
        `${error.message}: ${JSON.stringify(row.rows)} handled ${JSON.stringify(n.rows)} published ${published} lost ${lost} last ${last}`,
      );
    });
    expect((await status())?.stuck?.oldestRetained).toBe(`${last - 18}@${lost}`);
    const count = async () =>
      (await consumerDb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM effects')).rows[0]
        ?.n;
    expect(await count(), 'the two before the loss handled, nothing after it').toBe(
      handledBefore + 2,
    );

    // A bare number is refused on a stream cursor: stream sequences are not feed positions.
    await expect(
      resetSubscriptionCursor(consumerDb.db, 'consumer-from-producer', { to: String(lost) }),
    ).rejects.toThrow(/<stream sequence>@<feed position>.*Nothing was changed/);
    const reset = await resetSubscriptionCursor(consumerDb.db, 'consumer-from-producer', {
      toOldest: true,
    });
    expect(reset.dataLoss).toMatchObject({
      fromPosition: String(lost - 3),
      toPosition: String(lost),
    });
    await eventually(async () => (await count()) === published - 3, 'the rest handled', 30_000);
    const twice = await consumerDb.db.query('SELECT event_id FROM effects WHERE n > 1');
    expect(twice.rowCount).toBe(0);
    expect((await status())?.dataLoss.map((d) => [d.fromPosition, d.toPosition])).toEqual([
      [String(lost - 3), String(lost)],
    ]);
  });
});

describe('NATS source: a stream out of order, with copies and a gap', () => {
  let cluster: NatsCluster;
  let db: TestDatabase;
  let nc: NatsConnection;
  let consumer: Consumer;

  beforeAll(async () => {
    cluster = await startNatsCluster(3);
    db = await freshDatabase('nats_disorder');
    nc = await connect({ servers: cluster.servers });
    // The stream exists once the cluster's JetStream is up (the transport creates it then).
    await untilReady(async () => {
      await natsTransport({ connection: nc, service: 'direct' });
      await (await jetstreamManager(nc)).streams.info(streamName('direct'));
    });
    await db.db.query(
      'CREATE TABLE seen (seq int NOT NULL, version int NOT NULL, at bigserial PRIMARY KEY)',
    );
    const baton = createBaton({ db: db.db, service: 'reader' });
    consumer = baton.consumer({
      name: 'reader-from-direct',
      source: await natsSource({ connection: nc, service: 'direct' }),
      fetchWaitMs: 1_000,
    });
    consumer.subscribe('thing.made', async (event, tx) => {
      await tx.query('INSERT INTO seen (seq, version) VALUES ($1, $2)', [
        (event.payload as { seq: number }).seq,
        event.version,
      ]);
    });
    await consumer.start();
  }, 120_000);
  afterAll(async () => {
    await consumer?.stop();
    await nc?.close();
    await cluster?.stop();
    await db?.drop();
  });

  /** Stores the event of feed position `seq` (key k, version = seq) in the stream, as a relay would. */
  const store = (seq: number, copy = '') =>
    jetstream(nc).publish(
      subjectFor('direct', 'thing.made'),
      encodeEventLine({
        seq,
        id: uuidFor(seq),
        type: 'thing.made',
        key: 'k',
        version: seq,
        payload: { seq },
        headers: {},
        occurredAt: new Date().toISOString(),
        source: 'direct',
      }),
      { msgID: `${uuidFor(seq)}${copy}` }, // a copy past the duplicate window has a new message id
    );
  const seen = async () =>
    (await db.db.query<{ seq: number }>('SELECT seq FROM seen ORDER BY at')).rows.map((r) => r.seq);

  it('hands events on in feed order, once, holding those after a gap until it fills', async () => {
    for (const seq of [1, 3, 2, 2, 4]) await store(seq, seq === 2 ? `-${Math.random()}` : '');
    await eventually(async () => (await seen()).length === 4, 'four events handled');
    expect(await seen()).toEqual([1, 2, 3, 4]);
    // 6 comes before 5: nothing after the gap is handled while it is open…
    await store(6);
    await store(7);
    await new Promise((r) => setTimeout(r, 2_500));
    expect(await seen()).toEqual([1, 2, 3, 4]);
    // …and all of it, in order, once it fills.
    await store(5);
    await eventually(async () => (await seen()).length === 7, 'the held events handled');
    expect(await seen()).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('leaves no consumer behind on the server when it starts reading elsewhere or is closed', async () => {
    // Each ordered consumer lives on the cluster until deleted (or 5 minutes idle): a reader
    // that re-reads from another sequence (a rollback, a reset) must not leave its old one.
    const jsm = await jetstreamManager(nc);
    const consumers = async () =>
      (await jsm.streams.info(streamName('direct'))).state.consumer_count;
    const before = await consumers();
    const reader = new StreamReader(jetstream(nc), streamName('direct'));
    for (const from of [1, 3, 2, 1, 4]) {
      const read = await reader.read(from, 2, 1_000);
      expect(read[0]?.seq).toBe(from);
    }
    await reader.close();
    await eventually(
      async () => (await consumers()) <= before,
      `the consumers the reader made deleted (${before} before)`,
      10_000,
    );
  });

  it('hands on what the stream holds at once, without waiting for a full batch or the wait to end', async () => {
    // A JetStream fetch ends only with max_messages or when it expires: a reader built on one
    // fetch per read held a single event for the whole wait (the bench saw p50 1.2 s at 1,000/s).
    await db.db.query('CREATE TABLE seen_at_once (seq int PRIMARY KEY)');
    const atOnce = createBaton({ db: db.db, service: 'reader' }).consumer({
      name: 'reader-big-batches',
      source: await natsSource({ connection: nc, service: 'direct' }),
      batchSize: 1000,
      fetchWaitMs: 30_000,
    });
    atOnce.subscribe('thing.made', async (event, tx) => {
      await tx.query('INSERT INTO seen_at_once (seq) VALUES ($1)', [
        (event.payload as { seq: number }).seq,
      ]);
    });
    const count = async () =>
      (await db.db.query<{ n: number }>('SELECT count(*)::int AS n FROM seen_at_once')).rows[0]?.n;
    await atOnce.start();
    try {
      await eventually(async () => (await count()) === 7, 'the stream so far handled', 10_000);
      await store(8);
      await eventually(
        async () => (await count()) === 8,
        'a new event handled well before a batch of 1,000 or the 30 s wait',
        10_000,
      );
    } finally {
      await atOnce.stop();
    }
  });
});

function uuidFor(n: number): string {
  return `01900000-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;
}

/** The cluster elects its JetStream leaders a moment after it listens. */
