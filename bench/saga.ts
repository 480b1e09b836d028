/**
 * `npm run bench -- saga [--quick] [--json] [--local]`
 *
 * Sagas per second and start→completed latency of a 3-step saga (local step
 * in the orders database; points reservation on the loyalty service over
 * signed HTTP through the barrier; confirm), 50 in flight, against a
 * baseline doing the same business writes as plain transactions, in the
 * same run on the same two durable embedded PostgreSQL clusters. A profile
 * pass says where the orchestrator's time goes. `--local`: three local steps
 * in process instead, against three plain transactions (saga-local.ts).
 * See bench/README.md.
 */
import type { BenchFlags } from './support/args.ts';
import { type BenchClusters, machine, startBenchClusters } from './support/clusters.ts';
import { runDbosLocal } from './support/peer-dbos.ts';
import { heading, say, table, yes } from './support/report.ts';
import { type BaselineResult, runBaseline } from './support/saga-baseline.ts';
import { type BatonPassOptions, type BatonPassResult, runBatonPass } from './support/saga-baton.ts';
import { type LocalResult, runLocal } from './support/saga-local.ts';
import { median, round, wallMs } from './support/stats.ts';

const IN_FLIGHT = 50;
const TARGET_RATIO = 0.4;

/** The configuration of the headline figure (the best of the full run's sweep; see README). */
const HEADLINE: Omit<BatonPassOptions, 'label' | 'warmupMs' | 'measureMs'> = {
  inFlight: IN_FLIGHT,
  workers: 2,
  loopsPerWorker: 25,
  pollIntervalMs: 250,
  poolSize: 20,
};

export async function run(flags: BenchFlags): Promise<void> {
  const started = wallMs();
  heading(`baton saga benchmark (${flags.quick ? 'quick' : 'full'})`);
  const clusters = await startBenchClusters();
  try {
    if (flags.local) await runLocalMode(clusters, flags, started);
    else await runAll(clusters, flags, started);
  } finally {
    await clusters.stop();
  }
}

async function runAll(clusters: BenchClusters, flags: BenchFlags, started: number): Promise<void> {
  const quick = flags.quick;
  const host = machine();
  const s = clusters.settings;
  say(
    `machine: ${host.cpus} × ${host.cpuModel}, ${host.memoryGb} GiB, ${host.kernel}, node ${host.node}, load ${host.loadAverage1m}`,
  );
  say(
    `postgres ${s.server_version}: fsync=${s.fsync}, synchronous_commit=${s.synchronous_commit}, full_page_writes=${s.full_page_writes}, wal_sync_method=${s.wal_sync_method}; two clusters: orders (orchestrator) and loyalty (participant)`,
  );
  const time = quick ? { warmupMs: 2000, measureMs: 8000 } : { warmupMs: 3000, measureMs: 15_000 };

  const sweep: BatonPassOptions[] = quick
    ? [{ label: 'headline: 2 workers × 25 loops', ...HEADLINE, ...time }]
    : [
        { label: 'headline: 2 workers × 25 loops', ...HEADLINE, ...time },
        { label: '1 worker × 50 loops', ...HEADLINE, workers: 1, loopsPerWorker: 50, ...time },
        { label: '2 workers × 8 loops', ...HEADLINE, loopsPerWorker: 8, ...time },
        { label: '2 workers × 4 loops', ...HEADLINE, loopsPerWorker: 4, ...time },
        { label: '2 × 25, pool 50', ...HEADLINE, poolSize: 50, ...time },
      ];
  // The headline and the HTTP baseline alternate in rounds, so a change in the
  // machine's load during the run hits both (the ratio is the median of the rounds').
  const rounds = quick ? 2 : 3;
  const roundTime = { warmupMs: time.warmupMs, measureMs: Math.round(time.measureMs / 2) };
  const headlines: BatonPassResult[] = [];
  const baselines: BaselineResult[] = [];
  for (let r = 1; r <= rounds; r++) {
    heading(`round ${r}/${rounds} baton: ${sweep[0]?.label}`);
    const pass = await runBatonPass(clusters, { ...(sweep[0] as BatonPassOptions), ...roundTime });
    printPass(pass);
    headlines.push(pass);
    heading(`round ${r}/${rounds} baseline: plain transactions, HTTP between the services`);
    const plain = await runBaseline(clusters, { inFlight: IN_FLIGHT, http: true, ...roundTime });
    printBaseline(plain);
    baselines.push(plain);
  }
  const passes: BatonPassResult[] = [...headlines];
  for (const options of sweep.slice(1)) {
    heading(`baton sweep: ${options.label}`);
    const result = await runBatonPass(clusters, options);
    printPass(result);
    passes.push(result);
  }
  const roundRatios = headlines.map((h, i) =>
    round(h.sagasPerSec / (baselines[i] as BaselineResult).ordersPerSec, 3),
  );
  const headline = merge(headlines);
  const baseline = mergeBaseline(baselines);

  heading('baseline: plain transactions, no HTTP (for reference)');
  const direct = await runBaseline(clusters, {
    inFlight: IN_FLIGHT,
    http: false,
    warmupMs: time.warmupMs,
    measureMs: quick ? 5000 : time.measureMs,
  });
  printBaseline(direct);

  heading('profile: where the orchestrator spends its time (timed pass; slower)');
  const profiled = await runBatonPass(clusters, {
    label: 'profile',
    ...HEADLINE,
    warmupMs: time.warmupMs,
    measureMs: quick ? 5000 : 10_000,
    profile: true,
  });
  printProfile(profiled);

  const ratio = round(median(roundRatios), 3);
  const figures = {
    sagasPerSec: headline.sagasPerSec,
    p50Ms: headline.p50Ms,
    p99Ms: headline.p99Ms,
    baselinePerSec: baseline.ordersPerSec,
    baselineP50Ms: baseline.p50Ms,
    baselineP99Ms: baseline.p99Ms,
    ratio,
    roundRatios,
    baselineNoHttpPerSec: direct.ordersPerSec,
    ratioToNoHttp: round(headline.sagasPerSec / direct.ordersPerSec, 3),
    bestSweepSagasPerSec: Math.max(...passes.map((p) => p.sagasPerSec)),
  };
  const consistent =
    passes.every((p) => p.consistency.consistent && p.notCompleted === 0) &&
    baselines.every((b) => b.consistency.consistent) &&
    direct.consistency.consistent;
  const elapsedSec = round((wallMs() - started) / 1000, 1);

  heading('summary');
  table([
    ['figure', 'value', 'target', 'met'],
    ['sagas/s (50 in flight, mean of rounds)', figures.sagasPerSec, '', ''],
    ['  p50 / p99 ms start→completed', `${figures.p50Ms} / ${figures.p99Ms}`, '', ''],
    ['baseline orders/s (HTTP, mean of rounds)', figures.baselinePerSec, '', ''],
    ['  p50 / p99 ms', `${figures.baselineP50Ms} / ${figures.baselineP99Ms}`, '', ''],
    [
      `sagas ÷ baseline (median of ${rounds} rounds: ${roundRatios.join(', ')})`,
      ratio,
      `≥ ${TARGET_RATIO}`,
      ratio >= TARGET_RATIO ? 'yes' : 'NO',
    ],
    ['baseline orders/s (no HTTP)', figures.baselineNoHttpPerSec, '', ''],
    ['sagas ÷ no-HTTP baseline', figures.ratioToNoHttp, '', ''],
    ['every run consistent', consistent ? 'yes' : 'NO', '', ''],
  ]);
  say(`elapsed ${elapsedSec} s`);

  if (flags.json) {
    say(
      JSON.stringify({
        bench: 'saga',
        mode: quick ? 'quick' : 'full',
        ...figures,
        target: { ratio: TARGET_RATIO },
        pass: { ratio: ratio >= TARGET_RATIO },
        consistent,
        elapsedSec,
        machine: host,
        postgres: clusters.settings,
        separateClusters: true,
        sameProcess: 'orchestrator, participant and load driver run in one Node process',
        passes,
        baselines,
        baselineNoHttp: direct,
        profile: profiled.profile,
      }),
    );
  }
}

/** The rounds' headline passes as one: throughput averaged, latencies pooled by their medians. */
function merge(results: BatonPassResult[]): { sagasPerSec: number; p50Ms: number; p99Ms: number } {
  return {
    sagasPerSec: round(results.reduce((s, r) => s + r.sagasPerSec, 0) / results.length, 1),
    p50Ms: round(median(results.map((r) => r.p50Ms)), 1),
    p99Ms: round(median(results.map((r) => r.p99Ms)), 1),
  };
}

function mergeBaseline(results: BaselineResult[]): {
  ordersPerSec: number;
  p50Ms: number;
  p99Ms: number;
} {
  return {
    ordersPerSec: round(results.reduce((s, r) => s + r.ordersPerSec, 0) / results.length, 1),
    p50Ms: round(median(results.map((r) => r.p50Ms)), 1),
    p99Ms: round(median(results.map((r) => r.p99Ms)), 1),
  };
}

function printPass(r: BatonPassResult): void {
  table([
    ['sagas/s', r.sagasPerSec],
    ['completed in window', r.completed],
    ['p50 / p99 / mean ms', `${r.p50Ms} / ${r.p99Ms} / ${r.meanMs}`],
    ['cpu: machine busy cores / node cores', `${r.cpu.machineBusyCores} / ${r.cpu.nodeCores}`],
    [
      'consistent (orders = movements, no holds left, all completed)',
      r.consistency.consistent && r.notCompleted === 0
        ? `yes (${r.consistency.orders} orders)`
        : `NO ${JSON.stringify({ ...r.consistency, notCompleted: r.notCompleted })}`,
    ],
  ]);
}

function printBaseline(r: BaselineResult): void {
  table([
    ['orders/s', r.ordersPerSec],
    ['p50 / p99 / mean ms', `${r.p50Ms} / ${r.p99Ms} / ${r.meanMs}`],
    ['cpu: machine busy cores / node cores', `${r.cpu.machineBusyCores} / ${r.cpu.nodeCores}`],
    [
      'consistent',
      r.consistency.consistent
        ? `yes (${r.consistency.orders} orders)`
        : `NO ${JSON.stringify(r.consistency)}`,
    ],
  ]);
}

function printProfile(r: BatonPassResult): void {
  const p = r.profile;
  if (!p) return;
  say(
    `  ${r.sagasPerSec} sagas/s while timed; per saga: ${p.perSaga.statements} statements, ${p.perSaga.transactions} transactions (mean ${p.transactionsMeanMs} ms), ${p.perSaga.claims} claims of which ${p.perSaga.emptyClaims} found nothing`,
  );
  table([
    ['orchestrator statement', 'per saga', 'mean ms', 'empty'],
    ...p.statements.map((x) => [x.kind, x.perSaga, x.meanMs, x.emptyShare]),
    ...p.http.map((x) => [
      x.kind,
      round(x.count / Math.max(1, r.consistency.orders), 2),
      x.meanMs,
      '',
    ]),
  ]);
}

const LOCAL_TARGETS = { ratio: 0.4, singleP50Ms: 5, writingCommitsPerSaga: 3 };

async function runLocalMode(clusters: BenchClusters, flags: BenchFlags, started: number) {
  const host = machine();
  say(
    `machine: ${host.cpus} × ${host.cpuModel}, ${host.memoryGb} GiB, node ${host.node}, load ${host.loadAverage1m}; postgres ${clusters.settings.server_version}, fsync=${clusters.settings.fsync}`,
  );
  heading('local sagas: three local steps in process vs three plain transactions');
  say(
    "Measures: a saga of three steps, each one INSERT in the orchestrator's database, started and",
  );
  say('  awaited by the caller (sagas.start, then sagas.waitFor), 2 workers × 25 in this process;');
  say(
    '  the baseline writes the same three rows as three plain transactions (autocommit INSERTs).',
  );
  say(`  ${IN_FLIGHT} in flight (closed loop), then one at a time (caller-observed latency), and`);
  say(
    '  the transactions that wrote per saga (transaction ids taken, one at a time, nothing else running).',
  );
  say(
    '  The peer: DBOS Transact 4.24, the same rows as a workflow of three DBOS transactions (each commits its',
  );
  say(
    '  row with its output record: @dbos-inc/postgres-datasource), started and awaited (startWorkflow, getResult).',
  );
  say(
    "  Its SQL alone: the saga's durable writes as raw SQL, no Baton code, primary keys only (a floor:",
  );
  say(
    '  18 statements, 9 prepared, 5 commits per unit; not the first read, NOTIFY, LISTEN; saga-floor.ts).',
  );
  say('Does not measure: participants or HTTP (the default saga bench does).');
  const time = flags.quick
    ? { warmupMs: 2000, measureMs: 6000 }
    : { warmupMs: 3000, measureMs: 15_000 };
  const r: LocalResult = await runLocal(clusters, {
    inFlight: IN_FLIGHT,
    ...time,
    single: flags.quick ? 200 : 500,
  });
  const dbos = await runDbosLocal(clusters, {
    inFlight: IN_FLIGHT,
    ...time,
    single: flags.quick ? 200 : 500,
  });
  const dbosRatio = round(dbos.run.perSec / r.plain.perSec, 3);
  const pass = {
    ratio: r.ratio >= LOCAL_TARGETS.ratio,
    singleP50Ms: r.single.baton.p50Ms <= LOCAL_TARGETS.singleP50Ms,
    writingCommitsPerSaga: r.writingCommitsPerSaga <= LOCAL_TARGETS.writingCommitsPerSaga,
  };
  heading('summary');
  table([
    ['figure', 'Baton', 'its SQL alone', 'DBOS', 'plain', 'target (Baton)', 'met'],
    [
      `per second, ${IN_FLIGHT} in flight`,
      r.baton.perSec,
      r.floor.perSec,
      dbos.run.perSec,
      r.plain.perSec,
      '',
      '',
    ],
    [
      '  p50 / p99 ms',
      `${r.baton.p50Ms} / ${r.baton.p99Ms}`,
      `${r.floor.p50Ms} / ${r.floor.p99Ms}`,
      `${dbos.run.p50Ms} / ${dbos.run.p99Ms}`,
      `${r.plain.p50Ms} / ${r.plain.p99Ms}`,
      '',
      '',
    ],
    [
      'ratio ÷ plain',
      r.ratio,
      r.floorRatio,
      dbosRatio,
      '',
      `≥ ${LOCAL_TARGETS.ratio}`,
      yes(pass.ratio),
    ],
    [
      'one at a time: p50 / p99 ms (caller sees it done)',
      `${r.single.baton.p50Ms} / ${r.single.baton.p99Ms}`,
      `${r.single.floor.p50Ms} / ${r.single.floor.p99Ms}`,
      `${dbos.single.p50Ms} / ${dbos.single.p99Ms}`,
      `${r.single.plain.p50Ms} / ${r.single.plain.p99Ms}`,
      `p50 ≤ ${LOCAL_TARGETS.singleP50Ms}`,
      yes(pass.singleP50Ms),
    ],
    [
      'writing transactions per saga (per unit)',
      r.writingCommitsPerSaga,
      r.floorWritingCommitsPerUnit,
      dbos.writingCommitsPerWorkflow,
      r.plainWritingCommitsPerUnit,
      `≤ ${LOCAL_TARGETS.writingCommitsPerSaga}`,
      yes(pass.writingCommitsPerSaga),
    ],
  ]);
  const elapsedSec = round((wallMs() - started) / 1000, 1);
  say(`elapsed ${elapsedSec} s`);
  if (flags.json)
    say(
      JSON.stringify({
        bench: 'saga',
        mode: flags.quick ? 'quick-local' : 'local',
        ...r,
        dbos: {
          ...dbos.run,
          ratio: dbosRatio,
          single: dbos.single,
          writingCommitsPerWorkflow: dbos.writingCommitsPerWorkflow,
        },
        targets: LOCAL_TARGETS,
        pass,
        elapsedSec,
        machine: host,
        postgres: clusters.settings,
      }),
    );
}
