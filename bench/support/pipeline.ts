import pg from 'pg';
import { type Baton, createBaton } from '../../src/baton.ts';
import type { PgDatabase } from '../../src/db/pg-database.ts';
import { type RunningServer, serveHttp } from '../../src/http/node-server.ts';
import type { Relay } from '../../src/messaging/relay.ts';
import type { FeedHandler } from '../../src/transports/http-feed/feed-handler.ts';
import type { BenchClusters } from './clusters.ts';
import { type ConsumerTuning, HANDLED_TABLE_SQL } from './consumer-config.ts';
import { type ConsumerProcess, startConsumerProcess } from './consumer-process.ts';
import { type BenchTransport, natsProducer } from './nats-producer.ts';
import { wallMs } from './stats.ts';

export const EVENT_TYPE = 'order.placed';
const SECRET = 'bench-secret-0123456789abcdef0123456789abcdef';

export interface RelayTuning {
  batchSize: number;
  pollIntervalMs: number;
}

export interface PipelineOptions {
  /** Database name prefix (a fresh pair of databases per run). */
  name: string;
  notifyOnPublish: boolean;
  transport: BenchTransport;
  relay: RelayTuning;
  consumer: ConsumerTuning;
  /**
   * Note when the feed answered each event (`feedAnsweredAt`) and have the
   * consumer stamp when its batch arrived (`handled.fetched_ms`): the latency
   * run's split of the hop from the relay to the consumer.
   */
  traceHops?: boolean;
}

/**
 * The two services of an end-to-end run: the producer (this process: its
 * database on the producer cluster, Baton's relay and the HTTP feed on
 * loopback) and the consumer (a child process, its database on the consumer
 * cluster). The producer's business table is `orders`; the consumer's
 * handler writes one row per event into `handled`.
 */
export interface Pipeline {
  producerUrl: string;
  producerDb: PgDatabase;
  baton: Baton;
  consumer: ConsumerProcess;
  /** With `traceHops`: event id → wall-clock ms the feed's answer holding it was ready. */
  feedAnsweredAt: Map<string, number>;
  /** With `traceHops`: event id → wall-clock ms the request that the feed answered it in arrived. */
  feedAskedAt: Map<string, number>;
  /** Events the consumer has handled (committed) since priming, read from its database. */
  handledCount(): Promise<number>;
  /**
   * Checks a run's count against the tables before any figure is printed:
   * the producer's outbox and the consumer's `handled` table must each hold
   * exactly `published` events after the warm-up ones. Throws otherwise.
   */
  verifyCounts(published: number): Promise<void>;
  consumerQuery<R extends pg.QueryResultRow>(text: string): Promise<R[]>;
  stop(): Promise<{
    vmHwmMb: number;
    sampledRssMbMax: number;
    consumerErrors: number;
  }>;
}

export const ORDERS_TABLE_SQL = `CREATE TABLE orders (id bigserial PRIMARY KEY, client int NOT NULL,
  amount int NOT NULL, note text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`;

export async function startPipeline(
  clusters: BenchClusters,
  options: PipelineOptions,
): Promise<Pipeline> {
  const producer = await clusters.database(clusters.producer, `${options.name}_producer`, 6);
  await producer.db.query(ORDERS_TABLE_SQL);
  const baton = createBaton({
    db: producer.db,
    service: 'producer',
    notifyOnPublish: options.notifyOnPublish,
  });
  await baton.migrate();

  const consumerSide = await clusters.database(clusters.consumer, `${options.name}_consumer`, 2);
  await consumerSide.db.query(HANDLED_TABLE_SQL);
  await createBaton({ db: consumerSide.db, service: 'bench-consumer' }).migrate();

  const nats =
    options.transport.kind === 'nats'
      ? await natsProducer(options.transport.servers, 'producer')
      : undefined;
  const relay: Relay = baton.relay({ ...options.relay, transport: nats?.transport });
  await relay.start();
  const feed: FeedHandler = baton.feedHandler({
    auth: { type: 'hmac', secrets: [SECRET] },
    maxLimit: 10_000,
  });
  const feedAnsweredAt = new Map<string, number>();
  const feedAskedAt = new Map<string, number>();
  const server: RunningServer = await serveHttp(async (req, signal) => {
    const asked = wallMs();
    const answer = await feed.handle(req, signal);
    const body = answer.body;
    if (options.traceHops && typeof body === 'string') {
      // The time now; the ids after the answer is on its way (not on the measured path).
      const answered = wallMs();
      setImmediate(() => noteAnswered(body, asked, answered, feedAskedAt, feedAnsweredAt));
    }
    return answer;
  });
  const stopProducer = async () => {
    await relay.stop();
    await Promise.all([feed.close(), server.close(), nats?.connection.close()]);
  };
  const counter = new pg.Client({ connectionString: consumerSide.url });
  counter.on('error', () => {});
  await counter.connect();
  let consumer: ConsumerProcess;
  try {
    consumer = await startConsumerProcess({
      databaseUrl: consumerSide.url,
      feedUrl: `${server.url}/baton`,
      natsServers: options.transport.kind === 'nats' ? options.transport.servers : undefined,
      secret: SECRET,
      eventType: EVENT_TYPE,
      tuning: options.consumer,
      stampFetch: options.traceHops,
    });
  } catch (error) {
    await Promise.all([stopProducer(), counter.end()]);
    throw error;
  }

  let primed = 0;
  try {
    primed = await prime(baton, producer.db, counter);
  } catch (error) {
    consumer.kill();
    await Promise.all([stopProducer(), counter.end()]);
    throw error;
  }

  return {
    producerUrl: producer.url,
    producerDb: producer.db,
    baton,
    consumer,
    feedAnsweredAt,
    feedAskedAt,
    async handledCount() {
      return (await countHandled(counter)) - primed;
    },
    async verifyCounts(published) {
      const outbox = await producer.db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM baton.outbox',
      );
      const inOutbox = (outbox.rows[0]?.n ?? 0) - primed;
      const handled = (await countHandled(counter)) - primed;
      if (inOutbox !== published || handled !== published)
        throw new Error(
          `count check failed: the load generator counted ${published} events, the outbox holds ${inOutbox} and the consumer handled ${handled} (warm-up events excluded); no figure is printed from this run`,
        );
    },
    async consumerQuery(text) {
      return (await counter.query(text)).rows;
    },
    async stop() {
      const sampledRssMbMax = consumer.sampledRssMbMax();
      const stopped = await consumer.stop().catch((error: unknown) => {
        consumer.kill();
        throw error;
      });
      await stopProducer();
      await counter.end();
      return {
        vmHwmMb: stopped.vmHwmMb,
        sampledRssMbMax,
        consumerErrors: stopped.errors,
      };
    },
  };
}

/** The time each event of a feed answer (one JSON line per event after the header) was ready. */
function noteAnswered(
  body: string,
  asked: number,
  answered: number,
  askedAt: Map<string, number>,
  answeredAt: Map<string, number>,
): void {
  for (const match of body.matchAll(/^\{.*?"id": ?"([0-9a-f-]{36})"/gm)) {
    if (!match[1]) continue;
    askedAt.set(match[1], asked);
    answeredAt.set(match[1], answered);
  }
}

const PRIME_EVENTS = 500;

/** Warm-up before measuring: a few hundred events end to end (connections, JIT, caches). */
async function prime(baton: Baton, db: PgDatabase, counter: pg.Client): Promise<number> {
  for (let tx = 0; tx < PRIME_EVENTS / 100; tx++) {
    await db.transaction((t) =>
      baton.publish(
        t,
        Array.from({ length: 100 }, (_, j) => ({
          type: EVENT_TYPE,
          key: `prime-${tx}-${j}`,
          payload: { prime: true },
        })),
      ),
    );
  }
  const deadline = Date.now() + 60_000;
  while ((await countHandled(counter)) < PRIME_EVENTS) {
    if (Date.now() > deadline) throw new Error('the consumer did not handle the warm-up events');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return PRIME_EVENTS;
}

async function countHandled(counter: pg.Client): Promise<number> {
  const r = await counter.query<{ n: number }>('SELECT count(*)::int AS n FROM handled');
  return r.rows[0]?.n ?? 0;
}
