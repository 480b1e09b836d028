import { type NatsCluster, startNatsCluster } from '../../examples/shop/nats-cluster.ts';
import type { BenchFlags } from './args.ts';
import { type BenchClusters, machine } from './clusters.ts';
import { TUNED } from './consumer-config.ts';
import { type LatencyResult, runE2eLatency } from './e2e-latency.ts';
import { runE2eThroughput, type ThroughputResult } from './e2e-throughput.ts';
import type { BenchTransport } from './nats-producer.ts';
import { type OwnerLoadRun, runOwnerLoad } from './owner-load.ts';
import { heading, say, table } from './report.ts';
import { round, wallMs } from './stats.ts';

const SUBSCRIBER_COUNTS = [1, 4, 16] as const;

interface TransportFigures {
  e2eEventsPerSec: number;
  e2eP50Ms: number;
  e2eP99Ms: number;
  ownerStatementsPerSec: Record<string, number>;
  ownerStatementsPer1000Events: Record<string, number>;
  /** Of those per 1,000 events: serving the subscribers' reads (the feed), apart from the relay. */
  ownerServingPer1000Events: Record<string, number>;
  throughput: ThroughputResult;
  latency: LatencyResult;
  ownerLoad: OwnerLoadRun[];
}

/**
 * `npm run bench -- messaging --transport nats`: the HTTP feed and NATS
 * JetStream (a 3-node cluster on loopback, file storage, streams replicated
 * three times) measured the same way in one run — end-to-end events/s,
 * latency at 1,000 events/s, and the owning database's load with 1, 4 and
 * 16 subscribing services — printed side by side and as one JSON line.
 */
export async function compareTransports(
  clusters: BenchClusters,
  flags: BenchFlags,
  started: number,
): Promise<void> {
  const host = machine();
  say(
    `machine: ${host.cpus} × ${host.cpuModel}, ${host.memoryGb} GiB, node ${host.node}, load ${host.loadAverage1m}`,
  );
  say(`postgres ${clusters.settings.server_version}, fsync=${clusters.settings.fsync}`);
  const nats: NatsCluster = await startNatsCluster(3);
  try {
    const transports: BenchTransport[] = [
      { kind: 'http' },
      { kind: 'nats', servers: nats.servers },
    ];
    const figures: Record<string, TransportFigures> = {};
    for (const transport of transports)
      figures[transport.kind] = await measureTransport(clusters, transport, flags);
    report(figures, flags, started, host, clusters.settings);
  } finally {
    await nats.stop();
  }
}

async function measureTransport(
  clusters: BenchClusters,
  transport: BenchTransport,
  flags: BenchFlags,
): Promise<TransportFigures> {
  const quick = flags.quick;
  const relay = { batchSize: 1000, pollIntervalMs: 100 };
  const throughput = await runE2eThroughput(clusters, {
    transport,
    skipBaseline: transport.kind !== 'http',
    publishers: Math.min(flags.clients ?? 4, 8),
    eventsPerTx: 100,
    runMs: quick ? 6000 : 15_000,
    maxEvents: flags.events,
    maxInFlight: 20_000,
    warmupMs: quick ? 1500 : 3000,
    drainTimeoutMs: quick ? 15_000 : 30_000,
    configs: [{ label: 'tuned', relay, consumer: TUNED }],
  });
  const latencyEvents = flags.events ?? (quick ? 5000 : 20_000);
  const latency = await runE2eLatency(clusters, {
    transport,
    ratePerSec: 1000,
    events: latencyEvents,
    clients: 16,
    warmupEvents: Math.min(1000, Math.floor(latencyEvents / 5)),
    drainTimeoutMs: quick ? 15_000 : 20_000,
    relay,
    consumer: TUNED,
  });
  const events = quick ? 1000 : 3000;
  const ownerLoad = await runOwnerLoad(clusters, {
    transport,
    subscriberCounts: SUBSCRIBER_COUNTS,
    ratePerSec: 200,
    eventsPerTx: 10,
    events,
    drainTimeoutMs: 60_000,
  });
  const by = (pick: (run: OwnerLoadRun) => number) =>
    Object.fromEntries(ownerLoad.map((run) => [String(run.subscribers), pick(run)]));
  return {
    e2eEventsPerSec: throughput.best.overallEventsPerSec,
    e2eP50Ms: latency.p50Ms,
    e2eP99Ms: latency.p99Ms,
    ownerStatementsPerSec: by((run) => run.statementsPerSec),
    ownerStatementsPer1000Events: by((run) => run.statementsPer1000Events),
    ownerServingPer1000Events: by((run) => round((run.servingStatements / events) * 1000, 0)),
    throughput,
    latency,
    ownerLoad,
  };
}

function report(
  figures: Record<string, TransportFigures>,
  flags: BenchFlags,
  started: number,
  host: Record<string, string | number>,
  postgres: Record<string, string>,
): void {
  const http = figures.http as TransportFigures;
  const nats = figures.nats as TransportFigures;
  heading('summary: HTTP feed vs NATS JetStream (same run)');
  const owner = (f: TransportFigures, n: number) =>
    `${f.ownerStatementsPerSec[String(n)]}/s; per 1k events ${f.ownerStatementsPer1000Events[String(n)]}, serving ${f.ownerServingPer1000Events[String(n)]}`;
  table([
    ['figure', 'HTTP feed', 'NATS JetStream', 'NATS ÷ HTTP'],
    [
      'e2e events/s',
      http.e2eEventsPerSec,
      nats.e2eEventsPerSec,
      round(nats.e2eEventsPerSec / http.e2eEventsPerSec, 2),
    ],
    ['  plain-insert baseline rows/s', http.throughput.baselineRowsPerSec, '', ''],
    ['p50 ms at 1,000/s', http.e2eP50Ms, nats.e2eP50Ms, round(nats.e2eP50Ms / http.e2eP50Ms, 2)],
    ['p99 ms at 1,000/s', http.e2eP99Ms, nats.e2eP99Ms, round(nats.e2eP99Ms / http.e2eP99Ms, 2)],
    ...SUBSCRIBER_COUNTS.map((n) => [
      `owner statements, ${n} subscriber(s)`,
      owner(http, n),
      owner(nats, n),
      round(
        (nats.ownerStatementsPerSec[String(n)] ?? 0) / (http.ownerStatementsPerSec[String(n)] ?? 1),
        2,
      ),
    ]),
  ]);
  const growth = (f: TransportFigures) =>
    round(
      (f.ownerStatementsPer1000Events['16'] ?? 0) / (f.ownerStatementsPer1000Events['1'] ?? 1),
      2,
    );
  say(
    `owner load growth, 16 subscribers ÷ 1 (statements per event): HTTP feed ×${growth(http)}, NATS ×${growth(nats)}`,
  );
  const elapsedSec = round((wallMs() - started) / 1000, 1);
  say(`elapsed ${elapsedSec} s`);
  if (!flags.json) return;
  const brief = (f: TransportFigures) => ({
    e2eEventsPerSec: f.e2eEventsPerSec,
    e2eP50Ms: f.e2eP50Ms,
    e2eP99Ms: f.e2eP99Ms,
    ownerStatementsPerSec: f.ownerStatementsPerSec,
    ownerStatementsPer1000Events: f.ownerStatementsPer1000Events,
    ownerServingPer1000Events: f.ownerServingPer1000Events,
    ownerLoadGrowth16to1: growth(f),
    latency: f.latency,
    throughput: f.throughput.best,
    ownerLoad: f.ownerLoad,
  });
  say(
    JSON.stringify({
      bench: 'messaging',
      mode: flags.quick ? 'quick' : 'full',
      transport: 'nats',
      e2eBaselineRowsPerSec: http.throughput.baselineRowsPerSec,
      http: brief(http),
      nats: brief(nats),
      elapsedSec,
      machine: host,
      postgres,
    }),
  );
}
