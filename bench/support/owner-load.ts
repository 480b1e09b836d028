import { connect, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { createBaton } from '../../src/baton.ts';
import { PgDatabase } from '../../src/db/pg-database.ts';
import { type RunningServer, serveHttp } from '../../src/http/node-server.ts';
import type { Consumer } from '../../src/messaging/consumer.ts';
import { natsSource } from '../../src/nats.ts';
import { httpFeedSource } from '../../src/transports/http-feed/feed-source.ts';
import type { BenchClusters } from './clusters.ts';
import { HANDLED_TABLE_SQL } from './consumer-config.ts';
import { describeTransport } from './e2e-throughput.ts';
import { closeClients, openClients, pacedLoop } from './load.ts';
import { type BenchTransport, natsProducer } from './nats-producer.ts';
import { EVENT_TYPE, ORDERS_TABLE_SQL } from './pipeline.ts';
import { heading, say } from './report.ts';
import { round, sleep, wallMs } from './stats.ts';

export interface OwnerLoadOptions {
  transport: BenchTransport;
  subscriberCounts: readonly number[];
  /** Offered load, paced: events per second, `eventsPerTx` events per producer transaction. */
  ratePerSec: number;
  eventsPerTx: number;
  events: number;
  drainTimeoutMs: number;
}

export interface OwnerLoadRun {
  subscribers: number;
  /** Statements Baton sent to the owner's database from load start until every subscriber had every event. */
  statements: number;
  /** Of those, the relay's (numbering, dispatching, answering NATS repairs): the same whoever reads. */
  relayStatements: number;
  /** Of those, serving the subscribers' reads (the HTTP feed: event reads, nonces, head reads). */
  servingStatements: number;
  durationMs: number;
  statementsPerSec: number;
  statementsPer1000Events: number;
}

const SECRET = 'bench-owner-secret-0123456789abcdef0123456789';

/**
 * The owning service's database load as subscribers are added: N subscribing
 * services (each its own database on the consumer cluster, in this process)
 * read one producer at a fixed offered load. What is counted: every statement
 * Baton itself sends to the owner's database, by a counter on the
 * connections of two pools — the relay's (numbering, dispatching, NATS
 * repairs) and the feed's (answering each subscriber's reads). Not counted:
 * the load generator's own business transactions (the same in every run).
 */
export async function runOwnerLoad(
  clusters: BenchClusters,
  options: OwnerLoadOptions,
): Promise<OwnerLoadRun[]> {
  heading(`owner database load by subscriber count, over ${describeTransport(options.transport)}`);
  say(
    `Measures: statements Baton sends to the owning service's database while ${options.events} events are published`,
  );
  say(
    `  at ${options.ratePerSec}/s (${options.eventsPerTx} per tx) and until every subscriber handled all of them; each`,
  );
  say(
    '  subscriber is its own service (own database, own subscription, shipped consumer defaults).',
  );
  say(
    "Does not measure: the business transactions' own statements, nor the subscribers' databases.",
  );
  const runs: OwnerLoadRun[] = [];
  for (const subscribers of options.subscriberCounts) {
    const run = await measure(clusters, options, subscribers);
    runs.push(run);
    say(
      `${subscribers} subscriber(s): ${run.statements} statements in ${round(run.durationMs / 1000, 1)} s = ${run.statementsPerSec}/s, ${run.statementsPer1000Events} per 1,000 events (relay ${run.relayStatements}, serving reads ${run.servingStatements})`,
    );
  }
  return runs;
}

async function measure(
  clusters: BenchClusters,
  options: OwnerLoadOptions,
  subscribers: number,
): Promise<OwnerLoadRun> {
  const name = `bench_owner_${options.transport.kind}_${subscribers}`;
  const { url } = await clusters.database(clusters.producer, name, 1);
  const counted = countedDatabase(url);
  const serving = countedDatabase(url);
  await counted.db.query(ORDERS_TABLE_SQL);
  const baton = createBaton({ db: counted.db, service: 'producer' });
  await baton.migrate();
  // The feed on its own pool, so that serving reads are counted apart from the relay.
  const feedBaton = createBaton({ db: serving.db, service: 'producer' });
  const nats =
    options.transport.kind === 'nats'
      ? await natsProducer(options.transport.servers, 'producer')
      : undefined;
  const relay = baton.relay({ batchSize: 1000, pollIntervalMs: 100, transport: nats?.transport });
  const feed = feedBaton.feedHandler({ auth: { type: 'hmac', secrets: [SECRET] } });
  let server: RunningServer | undefined;
  const subscriptions: Subscriber[] = [];
  try {
    server = await serveHttp((req, signal) => feed.handle(req, signal));
    await relay.start();
    for (let i = 0; i < subscribers; i++)
      subscriptions.push(
        await startSubscriber(clusters, `${name}_s${i}`, options.transport, `${server.url}/baton`),
      );
    const clients = await openClients(url, 4);
    const before = { relay: counted.statements(), serving: serving.statements() };
    const startedAt = wallMs();
    try {
      await pacedLoop({
        clients,
        ratePerSec: options.ratePerSec / options.eventsPerTx,
        count: options.events / options.eventsPerTx,
        txn: async (client, index, n) => {
          await client.query('BEGIN');
          await client.query(
            `INSERT INTO orders (client, amount, note) SELECT $1, a, 'bench order' FROM generate_series(1, $2) AS a`,
            [index, options.eventsPerTx],
          );
          await baton.publish(
            client,
            Array.from({ length: options.eventsPerTx }, (_, j) => ({
              type: EVENT_TYPE,
              key: `k${(n * options.eventsPerTx + j) % 500}`,
              payload: { n, j },
            })),
          );
          await client.query('COMMIT');
          return options.eventsPerTx;
        },
      });
    } finally {
      await closeClients(clients);
    }
    const deadline = wallMs() + options.drainTimeoutMs;
    let behind = subscriptions;
    while (behind.length > 0 && wallMs() < deadline) {
      const counts = await Promise.all(behind.map((s) => s.handled()));
      behind = behind.filter((_, i) => (counts[i] ?? 0) < options.events);
      if (behind.length > 0) await sleep(20);
    }
    const durationMs = wallMs() - startedAt;
    const relayStatements = counted.statements() - before.relay;
    const servingStatements = serving.statements() - before.serving;
    const statements = relayStatements + servingStatements;
    // BENCH_STATEMENTS=1 shows where they go (since each pool opened, migrations included).
    if (process.env.BENCH_STATEMENTS)
      for (const [text, n] of [...counted.byText(), ...serving.byText()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 12))
        say(`    ${n} × ${text}`);
    await verify(counted.db, subscriptions, options.events);
    return {
      subscribers,
      statements,
      relayStatements,
      servingStatements,
      durationMs: round(durationMs, 0),
      statementsPerSec: round((statements / durationMs) * 1000, 0),
      statementsPer1000Events: round((statements / options.events) * 1000, 0),
    };
  } finally {
    await Promise.all(subscriptions.map((s) => s.stop()));
    await relay.stop();
    await Promise.all([feed.close(), server?.close(), nats?.connection.close()]);
    await counted.db.close();
    await serving.db.close();
  }
}

/** Each subscriber handled every event exactly once, and the outbox holds exactly those. */
async function verify(db: PgDatabase, subscribers: Subscriber[], events: number): Promise<void> {
  const outbox = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM baton.outbox'))
    .rows[0]?.n;
  const handled = await Promise.all(subscribers.map((s) => s.handled()));
  if (outbox !== events || handled.some((n) => n !== events))
    throw new Error(
      `count check failed: ${events} events published, the outbox holds ${outbox}, the subscribers handled ${handled.join(', ')}; no figure is printed from this run`,
    );
}

/** The owner's database, its pool's connections counting every statement sent on them. */
function countedDatabase(url: string): {
  db: PgDatabase;
  statements(): number;
  byText(): Map<string, number>;
} {
  let statements = 0;
  const byText = new Map<string, number>();
  const pool = new pg.Pool({ connectionString: url, max: 10, application_name: 'bench-owner' });
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = (...args: unknown[]) => {
      statements++;
      const first = args[0] as string | { text?: string };
      const text = (typeof first === 'string' ? first : (first?.text ?? '?'))
        .replace(/\s+/g, ' ')
        .slice(0, 90);
      byText.set(text, (byText.get(text) ?? 0) + 1);
      return query(...args);
    };
  });
  return { db: new PgDatabase({ pool }), statements: () => statements, byText: () => byText };
}

interface Subscriber {
  handled(): Promise<number>;
  stop(): Promise<void>;
}

async function startSubscriber(
  clusters: BenchClusters,
  name: string,
  transport: BenchTransport,
  feedUrl: string,
): Promise<Subscriber> {
  const { db } = await clusters.database(clusters.consumer, name, 3);
  await db.query(HANDLED_TABLE_SQL);
  const baton = createBaton({ db, service: name.replaceAll('_', '-') });
  await baton.migrate();
  let nats: NatsConnection | undefined;
  if (transport.kind === 'nats') nats = await connect({ servers: transport.servers });
  const source = nats
    ? await natsSource({ connection: nats, service: 'producer' })
    : httpFeedSource({ name: 'producer', url: feedUrl, auth: { type: 'hmac', secret: SECRET } });
  const consumer: Consumer = baton
    .consumer({ name: 'from-producer', source })
    .subscribe(EVENT_TYPE, async (event, tx) => {
      await tx.query(
        'INSERT INTO handled (event_id, key, handled_at) VALUES ($1, $2, clock_timestamp())',
        [event.id, event.key],
      );
    });
  await consumer.start();
  return {
    async handled() {
      return (
        (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM handled')).rows[0]?.n ?? 0
      );
    },
    async stop() {
      await consumer.stop();
      await nats?.close();
    },
  };
}
