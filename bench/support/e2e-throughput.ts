import type pg from 'pg';
import { uuidv7 } from '../../src/core/uuid-v7.ts';
import type { BenchClusters } from './clusters.ts';
import type { ConsumerTuning } from './consumer-config.ts';
import { type ClosedLoopResult, closeClients, closedLoop, openClients } from './load.ts';
import type { BenchTransport } from './nats-producer.ts';
import { EVENT_TYPE, ORDERS_TABLE_SQL, type RelayTuning, startPipeline } from './pipeline.ts';
import { heading, say, table } from './report.ts';
import { percentile, round, sleep, wallMs } from './stats.ts';

export interface ThroughputOptions {
  transport: BenchTransport;
  /** Skip the plain-insert baseline (when another part of the same run measured it). */
  skipBaseline?: boolean;
  publishers: number;
  eventsPerTx: number;
  runMs: number;
  /** Stop after this many events instead of after `runMs`. */
  maxEvents: number | undefined;
  /** Publishers wait while more than this many events are published but not yet handled. */
  maxInFlight: number;
  warmupMs: number;
  drainTimeoutMs: number;
  configs: ThroughputConfig[];
}

export interface ThroughputConfig {
  label: string;
  relay: RelayTuning;
  consumer: ConsumerTuning;
}

export interface ThroughputRun {
  label: string;
  relay: RelayTuning;
  consumer: ConsumerTuning;
  published: number;
  publishedPerSec: number;
  /** Handled per second in the window from warm-up to the publishers' end (includes catching up a backlog). */
  steadyEventsPerSec: number;
  steadyWindowMs: number;
  /** The headline: all events ÷ (last handled − first publish start); 0 if not drained in time. */
  overallEventsPerSec: number;
  drained: boolean;
  rssMbMax: number;
  consumerErrors: number;
  /** Publisher transaction (insert + publish + commit) latency, p50 / p99 ms. */
  publisherTxP50Ms: number;
  publisherTxP99Ms: number;
}

export interface ThroughputResult {
  baselineRowsPerSec: number;
  baselineTxPerSec: number;
  runs: ThroughputRun[];
  best: ThroughputRun;
  ratio: number;
}

const KEYS_PER_PUBLISHER = 2500;
const INSERT_ORDERS = `INSERT INTO orders (client, amount, note)
  SELECT $1, a, 'bench order' FROM unnest($2::int[]) AS a RETURNING id`;
const PLAIN_EVENTS_SQL = `CREATE TABLE plain_events (id bigserial PRIMARY KEY, event_id uuid NOT NULL,
  type text NOT NULL, key text NOT NULL, payload jsonb NOT NULL, headers jsonb NOT NULL,
  occurred_at timestamptz NOT NULL)`;
const INSERT_PLAIN = `INSERT INTO plain_events (event_id, type, key, payload, headers, occurred_at)
  SELECT (e->>'id')::uuid, e->>'type', e->>'key', e->'payload', e->'headers', (e->>'occurredAt')::timestamptz
  FROM jsonb_array_elements($1::jsonb) AS e`;

/** The events of one producer transaction: one per business row, keys private to the publisher. */
function eventsFor(ids: readonly string[], client: number, n: number, perTx: number) {
  return ids.map((id, j) => ({
    type: EVENT_TYPE,
    key: `c${client}-k${(n * perTx + j) % KEYS_PER_PUBLISHER}`,
    payload: { orderId: id, client, amount: j, sku: 'SKU-0001' },
  }));
}

async function insertOrders(client: pg.Client, index: number, perTx: number): Promise<string[]> {
  const amounts = Array.from({ length: perTx }, (_, j) => j);
  const r = await client.query<{ id: string }>(INSERT_ORDERS, [index, amounts]);
  return r.rows.map((row) => row.id);
}

/**
 * Sustained end-to-end throughput: producer commit → relay → HTTP feed →
 * consumer child → handler transaction committed in the consumer's database
 * (on a second cluster). Publishers are flow-controlled (they pause while
 * too many events are in flight), so the run settles at the rate the whole
 * pipeline sustains instead of piling up an outbox backlog. The baseline is
 * the same transactions with the events inserted into a plain table.
 */
export async function runE2eThroughput(
  clusters: BenchClusters,
  options: ThroughputOptions,
): Promise<ThroughputResult> {
  heading(
    `end-to-end throughput over ${describeTransport(options.transport)}: producer commit → consumer handler commit`,
  );
  const { publishers, eventsPerTx } = options;
  say(
    `Measures: ${publishers} producer clients, each tx = INSERT ${eventsPerTx} business rows + publish ${eventsPerTx} events`,
  );
  say(
    options.transport.kind === 'nats'
      ? '  (batched: one publish call per tx), the relay publishing to the stream in this process,'
      : '  (batched: one publish call per tx), relay + serveHttp(feedHandler) in this process,',
  );
  say(
    options.transport.kind === 'nats'
      ? '  consumer (Baton consumer reading the stream) in a child process writing one row'
      : '  consumer (Baton consumer, HMAC-signed HTTP long-poll) in a child process writing one row',
  );
  say('  per event; producer and consumer databases on two separate embedded clusters (separate');
  say(
    '  WALs). Rate = events ÷ (later of last handler commit seen and publishers done − first publish',
  );
  say(
    `  start); also shown: the rate handled from ${options.warmupMs} ms to the publishers' end (it can exceed the publish rate`,
  );
  say('  when it includes catching up an earlier backlog), and the publish rate.');
  say(
    `  publishers pause while > ${options.maxInFlight} events are in flight, so the rate is what the pipeline sustains.`,
  );
  say(
    'Baseline: the same clients and tx shape inserting the events into a plain table (no Baton).',
  );
  say('Does not measure: network hops between machines (all on loopback, sharing 2 cores).');

  const baseline = options.skipBaseline
    ? { events: Number.NaN, durationMs: 1, transactions: Number.NaN }
    : await runBaseline(clusters, options);
  const baselineRowsPerSec = (baseline.events / baseline.durationMs) * 1000;
  if (!options.skipBaseline)
    say(
      `baseline: ${round(baselineRowsPerSec, 0)} rows/s (${round((baseline.transactions / baseline.durationMs) * 1000, 0)} tx/s of ${eventsPerTx} rows)`,
    );

  const runs: ThroughputRun[] = [];
  for (const [i, config] of options.configs.entries()) {
    const run = await runPipeline(clusters, options, config, i);
    runs.push(run);
    say(
      `${config.label}: ${run.overallEventsPerSec} events/s end to end (${run.published} events; handled ${run.steadyEventsPerSec}/s in the window, published ${run.publishedPerSec}/s, publisher tx p50/p99 ${run.publisherTxP50Ms}/${run.publisherTxP99Ms} ms, drained ${run.drained}, consumer RSS max ${run.rssMbMax} MiB)`,
    );
  }
  const best = runs.reduce((a, b) => (b.overallEventsPerSec > a.overallEventsPerSec ? b : a));
  const ratio = round(best.overallEventsPerSec / baselineRowsPerSec, 3);
  table([
    [
      'config',
      'relay batch/poll',
      'consumer batch/handleBatch/conc/wait',
      'events',
      'e2e events/s',
      'window/s',
      'published/s',
      'RSS MiB',
    ],
    ...runs.map((r) => [
      r.label,
      `${r.relay.batchSize}/${r.relay.pollIntervalMs}ms`,
      `${r.consumer.batchSize}/${r.consumer.handleBatchSize}/${r.consumer.concurrency}/${r.consumer.fetchWaitMs}ms`,
      r.published,
      r.overallEventsPerSec,
      r.steadyEventsPerSec,
      r.publishedPerSec,
      r.rssMbMax,
    ]),
  ]);
  say(
    options.skipBaseline
      ? `e2eEventsPerSec = ${best.overallEventsPerSec} (${best.label}); the baseline is the HTTP run's`
      : `e2eEventsPerSec = ${best.overallEventsPerSec} (${best.label}); baseline ${round(baselineRowsPerSec, 0)} rows/s; ratio e2e ÷ baseline = ${ratio} (target ≥ 10,000 events/s)`,
  );
  return {
    baselineRowsPerSec: round(baselineRowsPerSec, 0),
    baselineTxPerSec: round((baseline.transactions / baseline.durationMs) * 1000, 0),
    runs,
    best,
    ratio,
  };
}

async function runBaseline(
  clusters: BenchClusters,
  options: ThroughputOptions,
): Promise<ClosedLoopResult> {
  const { url, db } = await clusters.database(clusters.producer, 'bench_e2e_baseline', 1);
  await db.query(ORDERS_TABLE_SQL);
  await db.query(PLAIN_EVENTS_SQL);
  const clients = await openClients(url, options.publishers);
  try {
    const result = await closedLoop({
      clients,
      durationMs: options.runMs,
      maxEvents: options.maxEvents,
      eventsPerTx: options.eventsPerTx,
      txn: async (client, index, n) => {
        await client.query('BEGIN');
        const ids = await insertOrders(client, index, options.eventsPerTx);
        const events = eventsFor(ids, index, n, options.eventsPerTx).map((e) => ({
          ...e,
          id: uuidv7(),
          headers: {},
          occurredAt: new Date().toISOString(),
        }));
        await client.query(INSERT_PLAIN, [JSON.stringify(events)]);
        await client.query('COMMIT');
        return events.length;
      },
    });
    const rows = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM plain_events'))
      .rows[0]?.n;
    if (rows !== result.events)
      throw new Error(
        `count check failed: the baseline counted ${result.events} rows, plain_events holds ${rows}`,
      );
    return result;
  } finally {
    await closeClients(clients);
  }
}

async function runPipeline(
  clusters: BenchClusters,
  options: ThroughputOptions,
  config: ThroughputConfig,
  index: number,
): Promise<ThroughputRun> {
  const pipeline = await startPipeline(clusters, {
    name: `bench_tp${index}`,
    notifyOnPublish: true,
    transport: options.transport,
    relay: config.relay,
    consumer: config.consumer,
  });
  const clients = await openClients(pipeline.producerUrl, options.publishers);
  const samples: { t: number; n: number }[] = [];
  let handled = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      handled = await pipeline.handledCount();
      samples.push({ t: wallMs(), n: handled });
      await sleep(100);
    }
  })();
  let load: ClosedLoopResult;
  let lastHandledAt = Number.NaN;
  let drained = false;
  try {
    load = await closedLoop({
      clients,
      durationMs: options.runMs,
      maxEvents: options.maxEvents,
      eventsPerTx: options.eventsPerTx,
      blocked: (issued) => issued - handled > options.maxInFlight,
      txn: async (client, clientIndex, n) => {
        await client.query('BEGIN');
        const ids = await insertOrders(client, clientIndex, options.eventsPerTx);
        await pipeline.baton.publish(client, eventsFor(ids, clientIndex, n, options.eventsPerTx));
        await client.query('COMMIT');
        return ids.length;
      },
    });
    const drainDeadline = wallMs() + options.drainTimeoutMs;
    while (wallMs() < drainDeadline) {
      if (handled >= load.events) {
        drained = true;
        lastHandledAt = samples.find((s) => s.n >= load.events)?.t ?? wallMs();
        break;
      }
      await sleep(50);
    }
  } finally {
    sampling = false;
    await sampler;
    await closeClients(clients);
  }
  if (drained)
    await pipeline.verifyCounts(load.events).catch(async (error: unknown) => {
      await pipeline.stop().catch(() => {});
      throw error;
    });
  const stopped = await pipeline.stop();
  const windowStart = load.startedAt + options.warmupMs;
  const first = samples.find((s) => s.t >= windowStart);
  const last = samples.filter((s) => s.t <= load.endedAt).at(-1);
  const steady =
    first && last && last.t > first.t ? ((last.n - first.n) / (last.t - first.t)) * 1000 : 0;
  return {
    label: config.label,
    relay: config.relay,
    consumer: config.consumer,
    published: load.events,
    publishedPerSec: round((load.events / load.durationMs) * 1000, 0),
    steadyEventsPerSec: round(steady, 0),
    steadyWindowMs: first && last ? round(last.t - first.t, 0) : 0,
    // The clock runs until the later of "publishers done" and "last event seen handled".
    overallEventsPerSec: drained
      ? round((load.events / (Math.max(lastHandledAt, load.endedAt) - load.startedAt)) * 1000, 0)
      : 0,
    drained,
    rssMbMax: round(Math.max(stopped.vmHwmMb, stopped.sampledRssMbMax), 1),
    consumerErrors: stopped.consumerErrors,
    publisherTxP50Ms: round(percentile(load.txLatenciesMs, 50), 1),
    publisherTxP99Ms: round(percentile(load.txLatenciesMs, 99), 1),
  };
}

export function describeTransport(transport: BenchTransport): string {
  return transport.kind === 'nats'
    ? `NATS JetStream (${transport.servers.length}-node cluster, file storage)`
    : 'the HTTP feed';
}
