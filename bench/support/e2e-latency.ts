import type { BenchClusters } from './clusters.ts';
import type { ConsumerTuning } from './consumer-config.ts';
import { describeTransport } from './e2e-throughput.ts';
import { closeClients, openClients, pacedLoop } from './load.ts';
import type { BenchTransport } from './nats-producer.ts';
import { EVENT_TYPE, type RelayTuning, startPipeline } from './pipeline.ts';
import { heading, say } from './report.ts';
import { percentile, round, sleep, wallMs } from './stats.ts';

export interface LatencyOptions {
  transport: BenchTransport;
  ratePerSec: number;
  events: number;
  clients: number;
  /** Events at the start left out of the percentiles (connections, caches, JIT warming up). */
  warmupEvents: number;
  drainTimeoutMs: number;
  relay: RelayTuning;
  consumer: ConsumerTuning;
  /** Stamp each hop (the feed's answer, the batch's arrival): see `traceHops`. */
  splitHops?: boolean;
}

export interface LatencyResult {
  ratePerSec: number;
  offeredPerSec: number;
  measured: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  rssMbMax: number;
  missing: number;
  consumerErrors: number;
}

const COMMIT_TIMES_SQL = `CREATE TABLE commit_times (event_id uuid PRIMARY KEY, committed_ms float8 NOT NULL)`;

/**
 * Latency from the producer's COMMIT returning to the consumer's handler
 * running, at a fixed offered load (one event per transaction, paced). The
 * producer notes the wall-clock time right after COMMIT returns, in memory,
 * and stores it afterwards in `commit_times` (keyed by event id) so the
 * measurement itself adds no load; the handler stamps `clock_timestamp()` in
 * the consumer's row. Both clocks are this machine's clock.
 */
export async function runE2eLatency(
  clusters: BenchClusters,
  options: LatencyOptions,
): Promise<LatencyResult> {
  heading(
    `end-to-end latency at ${options.ratePerSec} events/s offered, over ${describeTransport(options.transport)}`,
  );
  say(
    `Measures: producer COMMIT returned → consumer handler running (clock_timestamp() in the handler's`,
  );
  say(
    `  INSERT), for ${options.events} events paced at ${options.ratePerSec}/s, one event per tx, over ${options.clients} producer`,
  );
  say(
    `  connections; the first ${options.warmupEvents} events are left out. NOTIFY on publish (default); the relay`,
  );
  say(
    options.transport.kind === 'nats'
      ? '  wakes on it and publishes to the stream (acknowledged by a quorum), the consumer fetches, then handles.'
      : '  wakes on it, the feed long-poll wakes on the relay, the consumer ingests, then handles.',
  );
  say("Does not measure: the handler transaction's own COMMIT (it follows the stamp, typically <");
  say('  a few ms with fsync), nor cross-machine network time.');

  const pipeline = await startPipeline(clusters, {
    name: 'bench_latency',
    notifyOnPublish: true,
    transport: options.transport,
    relay: options.relay,
    consumer: options.consumer,
    traceHops: options.splitHops ?? true,
  });
  const clients = await openClients(pipeline.producerUrl, options.clients);
  const committed = new Map<string, number>();
  let offeredPerSec = 0;
  try {
    const load = await pacedLoop({
      clients,
      ratePerSec: options.ratePerSec,
      count: options.events,
      txn: async (client, index, n) => {
        await client.query('BEGIN');
        const r = await client.query<{ id: string }>(
          `INSERT INTO orders (client, amount, note) VALUES ($1, $2, 'bench order') RETURNING id`,
          [index, n % 1000],
        );
        const id = r.rows[0]?.id ?? '';
        const [event] = await pipeline.baton.publish(client, {
          type: EVENT_TYPE,
          key: `order-${id}`,
          payload: { orderId: id, seq: n },
        });
        await client.query('COMMIT');
        if (event && n >= options.warmupEvents) committed.set(event.id, wallMs());
        return 1;
      },
    });
    offeredPerSec = load.offeredPerSec;
    const deadline = wallMs() + options.drainTimeoutMs;
    while (wallMs() < deadline && (await pipeline.handledCount()) < options.events) await sleep(50);
    // Store the producer-side commit times, then join them with the consumer's stamps.
    await pipeline.producerDb.query(COMMIT_TIMES_SQL);
    await pipeline.producerDb.query(
      `INSERT INTO commit_times (event_id, committed_ms)
       SELECT * FROM unnest($1::uuid[], $2::float8[])`,
      [[...committed.keys()], [...committed.values()]],
    );
  } finally {
    await closeClients(clients);
  }
  const producerRows = await pipeline.producerDb.query<{ id: string; ms: number }>(
    'SELECT event_id::text AS id, committed_ms AS ms FROM commit_times',
  );
  const consumerRows = await pipeline.consumerQuery<{
    id: string;
    ms: number;
    fetched: number | null;
  }>(
    'SELECT event_id::text AS id, extract(epoch FROM handled_at)::float8 * 1000 AS ms, fetched_ms AS fetched FROM handled',
  );
  // Where the time goes, besides the stamps above and the feed's: each event's relay transaction
  // (outbox.relayed_at) and the consumer transaction that received it (inbox.received_at).
  const relayedRows = await pipeline.producerDb.query<{ id: string; ms: number }>(
    'SELECT event_id::text AS id, extract(epoch FROM relayed_at)::float8 * 1000 AS ms FROM baton.outbox',
  );
  const receivedRows = await pipeline.consumerQuery<{ id: string; ms: number }>(
    'SELECT event_id::text AS id, extract(epoch FROM received_at)::float8 * 1000 AS ms FROM baton.inbox',
  );
  // Every event handled in time, and counted: checked against the tables before any figure.
  await pipeline.verifyCounts(options.events).catch(async (error: unknown) => {
    await pipeline.stop().catch(() => {});
    throw error;
  });
  const stopped = await pipeline.stop();
  const handledAt = new Map(consumerRows.map((r) => [r.id, Number(r.ms)]));
  const latencies: number[] = [];
  let missing = 0;
  for (const row of producerRows.rows) {
    const at = handledAt.get(row.id);
    if (at === undefined) missing++;
    else latencies.push(at - Number(row.ms));
  }
  const result: LatencyResult = {
    ratePerSec: options.ratePerSec,
    offeredPerSec: round(offeredPerSec, 0),
    measured: latencies.length,
    p50Ms: round(percentile(latencies, 50)),
    p90Ms: round(percentile(latencies, 90)),
    p99Ms: round(percentile(latencies, 99)),
    maxMs: round(percentile(latencies, 100)),
    rssMbMax: round(Math.max(stopped.vmHwmMb, stopped.sampledRssMbMax), 1),
    missing,
    consumerErrors: stopped.consumerErrors,
  };
  say(
    `achieved offered rate ${result.offeredPerSec}/s; ${result.measured} events measured, ${missing} not handled in time`,
  );
  say(
    `e2eP50Ms = ${result.p50Ms}, p90 = ${result.p90Ms}, e2eP99Ms = ${result.p99Ms}, max = ${result.maxMs}; consumer RSS max ${result.rssMbMax} MiB`,
  );
  const relayedAt = new Map(relayedRows.rows.map((r) => [r.id, Number(r.ms)]));
  const stages = latencyStages(producerRows.rows, [
    ['relay transaction', relayedAt],
    ['feed answered', pipeline.feedAnsweredAt],
    [
      'batch in the consumer',
      new Map(consumerRows.filter((r) => r.fetched !== null).map((r) => [r.id, Number(r.fetched)])),
    ],
    ["consumer's receiving transaction", new Map(receivedRows.map((r) => [r.id, Number(r.ms)]))],
    ['handler', handledAt],
  ]);
  say(`where it goes (p50 / p99 ms, each stage from the one before): commit → ${stages}`);
  const split = feedSplit(
    producerRows.rows,
    relayedAt,
    pipeline.feedAskedAt,
    pipeline.feedAnsweredAt,
  );
  if (split) say(`  of relay → feed answered: ${split}`);
  return result;
}

/**
 * Per-stage p50 / p99 of the measured events, each stage from the one
 * before (relay and consumer stages are transaction start times; the feed's
 * and the consumer's stamps are wall-clock times in those processes, on the
 * same machine). A stage without stamps (the feed's, over NATS) is skipped.
 */
function latencyStages(
  committed: readonly { id: string; ms: number }[],
  stages: readonly [string, ReadonlyMap<string, number>][],
): string {
  const present = stages.filter(([, at]) => at.size > 0);
  const spans = present.map(() => [] as number[]);
  for (const c of committed) {
    const times = present.map(([, at]) => at.get(c.id));
    if (times.some((t) => t === undefined || Number.isNaN(t))) continue;
    let before = Number(c.ms);
    times.forEach((t, i) => {
      spans[i]?.push((t as number) - before);
      before = t as number;
    });
  }
  return present.map(([name], i) => `${name} ${p50p99(spans[i] ?? [])}`).join('; → ');
}

/**
 * The feed hop split in two, over the same measured events as the stages:
 * how long after the relay started the consumer's request arrived (0 when it
 * was already waiting), and how long the feed took from then. Undefined
 * without the feed's stamps (over NATS).
 */
function feedSplit(
  committed: readonly { id: string }[],
  relayed: ReadonlyMap<string, number>,
  asked: ReadonlyMap<string, number>,
  answered: ReadonlyMap<string, number>,
): string | undefined {
  const late: number[] = [];
  const served: number[] = [];
  for (const { id } of committed) {
    const r = relayed.get(id);
    const a = asked.get(id);
    const done = answered.get(id);
    if (r === undefined || a === undefined || done === undefined) continue;
    late.push(Math.max(0, a - r));
    served.push(done - Math.max(a, r));
  }
  if (late.length === 0) return undefined;
  return `the consumer's request arriving after the relay started ${p50p99(late)}; the feed answering from then ${p50p99(served)}`;
}

const p50p99 = (xs: number[]) => `${round(percentile(xs, 50))} / ${round(percentile(xs, 99))}`;
