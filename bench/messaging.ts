/**
 * `npm run bench -- messaging [--quick] [--json] [--events N] [--clients N] [--transport http|nats]`
 *
 * Three figures for Baton's messaging core, each against a baseline measured
 * in the same run on the same durable embedded PostgreSQL clusters:
 * outbox overhead on business transactions, sustained end-to-end throughput,
 * and end-to-end latency at a fixed load; plus the consumer's peak memory.
 * With `--transport nats`, the HTTP feed and NATS JetStream side by side
 * instead (`transports.ts`). See bench/README.md for what each figure means
 * and what it leaves out.
 */
import type { BenchFlags } from './support/args.ts';
import { type BenchClusters, machine, startBenchClusters } from './support/clusters.ts';
import { BIGGER, SHIPPED, TUNED } from './support/consumer-config.ts';
import { runE2eLatency } from './support/e2e-latency.ts';
import { runE2eThroughput, type ThroughputOptions } from './support/e2e-throughput.ts';
import { runOutboxOverhead } from './support/outbox-overhead.ts';
import {
  GRAPHILE_VARIANTS,
  type PeerLatency,
  type PeerThroughput,
  runGraphileLatency,
  runGraphileThroughput,
} from './support/peer-graphile.ts';
import { heading, say, table, yes } from './support/report.ts';
import { round, wallMs } from './support/stats.ts';
import { compareTransports } from './support/transports.ts';

/**
 * Issue 15's targets: publishing costs at most 1.05 × the floor of the same
 * run (one more plain INSERT in the transaction, no Baton); 10,000 events/s
 * end to end and twice graphile-worker's best; p99 ≤ 20 ms at 1,000/s.
 */
const TARGETS = {
  outboxOverheadTimesFloor: 1.05,
  e2eEventsPerSec: 10_000,
  e2eTimesGraphileBest: 2,
  e2eP99Ms: 20,
  rssMbMax: 150,
};

export async function run(flags: BenchFlags): Promise<void> {
  const started = wallMs();
  const quick = flags.quick;
  heading(`baton messaging benchmark (${quick ? 'quick' : 'full'})`);
  const clusters = await startBenchClusters();
  try {
    if (flags.transport === 'nats') await compareTransports(clusters, flags, started);
    else await runAll(clusters, flags, started);
  } finally {
    await clusters.stop();
  }
}

async function runAll(clusters: BenchClusters, flags: BenchFlags, started: number): Promise<void> {
  const quick = flags.quick;
  const host = machine();
  say(
    `machine: ${host.cpus} × ${host.cpuModel}, ${host.memoryGb} GiB, ${host.kernel}, node ${host.node}, load ${host.loadAverage1m}`,
  );
  say(
    `postgres ${clusters.settings.server_version}: fsync=${clusters.settings.fsync}, synchronous_commit=${clusters.settings.synchronous_commit}, full_page_writes=${clusters.settings.full_page_writes}, wal_sync_method=${clusters.settings.wal_sync_method}, shared_buffers=${clusters.settings.shared_buffers}; two clusters (producer, consumer)`,
  );

  const overhead = await runOutboxOverhead(clusters, {
    clients: flags.clients ?? 8,
    rounds: quick ? 6 : 20,
    runMs: quick ? 500 : 1000,
  });

  const relay = { batchSize: 1000, pollIntervalMs: 100 };
  const configs: ThroughputOptions['configs'] = quick
    ? [{ label: 'tuned', relay, consumer: TUNED }]
    : [
        { label: 'shipped defaults', relay, consumer: SHIPPED },
        { label: 'bigger batches', relay, consumer: BIGGER },
        { label: 'handle batch 500', relay, consumer: { ...BIGGER, handleBatchSize: 500 } },
        { label: 'one worker', relay, consumer: { ...BIGGER, concurrency: 1 } },
        { label: 'tuned: four workers', relay, consumer: TUNED },
      ];
  const throughput = await runE2eThroughput(clusters, {
    transport: { kind: 'http' },
    publishers: Math.min(flags.clients ?? 4, 8),
    eventsPerTx: 100,
    runMs: quick ? 6000 : 15_000,
    maxEvents: flags.events,
    maxInFlight: 20_000,
    warmupMs: quick ? 1500 : 3000,
    drainTimeoutMs: quick ? 8000 : 30_000,
    configs,
  });

  const latencyEvents = flags.events ?? (quick ? 5000 : 20_000);
  const latency = await runE2eLatency(clusters, {
    transport: { kind: 'http' },
    ratePerSec: 1000,
    events: latencyEvents,
    clients: 16,
    warmupEvents: Math.min(1000, Math.floor(latencyEvents / 5)),
    drainTimeoutMs: quick ? 8000 : 20_000,
    relay,
    consumer: throughput.best.consumer,
  });

  heading('peer: graphile-worker, the same load (jobs added in the business transaction)');
  say(
    'Measures: the throughput and latency runs above with graphile-worker 0.18 in place of Baton:',
  );
  say(
    '  jobs added by add_jobs in the business transaction, a task writing one row into `handled`,',
  );
  say(
    '  10 concurrent jobs, ONE database (its design: queue and worker beside the business tables),',
  );
  say(
    '  with its defaults and with its batching (local queue of 40, completions batched), after an',
  );
  say('  ANALYZE of its jobs table. Baton crosses two databases and an HTTP hop; this does not.');
  const peerThroughput: PeerThroughput[] = [];
  for (const variant of GRAPHILE_VARIANTS)
    peerThroughput.push(
      await runGraphileThroughput(clusters, variant, {
        publishers: Math.min(flags.clients ?? 4, 8),
        eventsPerTx: 100,
        runMs: quick ? 6000 : 15_000,
        maxInFlight: 20_000,
        drainTimeoutMs: quick ? 20_000 : 60_000,
      }),
    );
  const peerLatency: PeerLatency = await runGraphileLatency(
    clusters,
    GRAPHILE_VARIANTS[1] as (typeof GRAPHILE_VARIANTS)[number],
    {
      ratePerSec: 1000,
      events: latencyEvents,
      clients: 16,
      warmupEvents: Math.min(1000, Math.floor(latencyEvents / 5)),
      drainTimeoutMs: quick ? 20_000 : 40_000,
    },
  );
  const peerBest = Math.max(...peerThroughput.map((p) => p.jobsPerSec));

  const rssMbMax = round(Math.max(latency.rssMbMax, ...throughput.runs.map((r) => r.rssMbMax)), 1);
  const figures = {
    outboxOverheadRatio: overhead.ratioNotify,
    outboxOverheadRatioNoNotify: overhead.ratioNoNotify,
    outboxOverheadRatioNotifyEveryTx: overhead.ratioNotifyEvery,
    outboxOverheadFloorOneMoreInsert: overhead.ratioSecondInsert,
    e2eEventsPerSec: throughput.best.overallEventsPerSec,
    e2eBaselineRowsPerSec: throughput.baselineRowsPerSec,
    e2eRatioToBaseline: throughput.ratio,
    e2eRatioToGraphileBest: round(throughput.best.overallEventsPerSec / peerBest, 2),
    graphileJobsPerSec: Object.fromEntries(peerThroughput.map((p) => [p.label, p.jobsPerSec])),
    graphileP50Ms: peerLatency.p50Ms,
    graphileP99Ms: peerLatency.p99Ms,
    e2eP50Ms: latency.p50Ms,
    e2eP99Ms: latency.p99Ms,
    rssMbMax,
  };
  const overheadCeiling = round(
    TARGETS.outboxOverheadTimesFloor * figures.outboxOverheadFloorOneMoreInsert,
    3,
  );
  const pass = {
    outboxOverheadRatio: figures.outboxOverheadRatio <= overheadCeiling,
    e2eEventsPerSec: figures.e2eEventsPerSec >= TARGETS.e2eEventsPerSec,
    e2eTimesGraphileBest: figures.e2eRatioToGraphileBest >= TARGETS.e2eTimesGraphileBest,
    e2eP99Ms: figures.e2eP99Ms <= TARGETS.e2eP99Ms,
    rssMbMax: figures.rssMbMax <= TARGETS.rssMbMax,
  };
  const elapsedSec = round((wallMs() - started) / 1000, 1);

  heading('summary');
  table([
    ['figure', 'value', 'target', 'met'],
    [
      'outboxOverheadRatio (defaults)',
      figures.outboxOverheadRatio,
      `≤ ${overheadCeiling} (1.05 × floor)`,
      yes(pass.outboxOverheadRatio),
    ],
    ['outboxOverheadRatio (NOTIFY off)', figures.outboxOverheadRatioNoNotify, '', ''],
    ['  NOTIFY in every transaction', overhead.ratioNotifyEvery, '', ''],
    ['  floor: one more plain INSERT, no Baton', overhead.ratioSecondInsert, '', ''],
    [
      'e2eEventsPerSec',
      figures.e2eEventsPerSec,
      `≥ ${TARGETS.e2eEventsPerSec}`,
      yes(pass.e2eEventsPerSec),
    ],
    ['  baseline plain-insert rows/s', figures.e2eBaselineRowsPerSec, '', ''],
    ['  e2e ÷ baseline', figures.e2eRatioToBaseline, '', ''],
    ...peerThroughput.map((p) => [`  ${p.label}, jobs/s`, p.jobsPerSec, '', '']),
    [
      '  e2e ÷ graphile-worker (its best)',
      figures.e2eRatioToGraphileBest,
      `≥ ${TARGETS.e2eTimesGraphileBest}`,
      yes(pass.e2eTimesGraphileBest),
    ],
    ['e2eP50Ms', figures.e2eP50Ms, '', ''],
    ['e2eP99Ms', figures.e2eP99Ms, `≤ ${TARGETS.e2eP99Ms}`, yes(pass.e2eP99Ms)],
    [
      '  graphile-worker, batching: p50 / p99 ms',
      `${peerLatency.p50Ms} / ${peerLatency.p99Ms}`,
      '',
      '',
    ],
    ['rssMbMax (consumer child)', figures.rssMbMax, `≤ ${TARGETS.rssMbMax}`, yes(pass.rssMbMax)],
  ]);
  say(`elapsed ${elapsedSec} s`);

  if (flags.json) {
    const report = {
      bench: 'messaging',
      mode: quick ? 'quick' : 'full',
      ...figures,
      targets: { ...TARGETS, outboxOverheadRatio: overheadCeiling },
      pass,
      elapsedSec,
      machine: host,
      postgres: clusters.settings,
      separateClusters: true,
      overhead,
      throughput: {
        ...throughput,
        publishers: Math.min(flags.clients ?? 4, 8),
        eventsPerTx: 100,
      },
      latency,
      peers: { throughput: peerThroughput, latency: peerLatency },
    };
    say(JSON.stringify(report));
  }
}
