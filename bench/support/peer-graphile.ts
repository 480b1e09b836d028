import { Logger, type Runner, run, runMigrations } from 'graphile-worker';
import pg from 'pg';
import type { BenchClusters } from './clusters.ts';
import { HANDLED_TABLE_SQL } from './consumer-config.ts';
import { closeClients, closedLoop, openClients, pacedLoop } from './load.ts';
import { ORDERS_TABLE_SQL } from './pipeline.ts';
import { say } from './report.ts';
import { percentile, round, sleep, wallMs } from './stats.ts';

/**
 * The peer a user would pick instead of Baton's messaging for "do this after
 * my transaction commits": graphile-worker (0.18), measured the same way.
 * Jobs are added in the business transaction (`graphile_worker.add_jobs`,
 * one per business row, the same rows and tx shape as Baton's publishers);
 * a worker whose task writes one row into `handled`. Unlike Baton's run it
 * is ONE database — graphile-worker's queue lives beside the business tables
 * and its worker writes there too — so it pays for one durable hop, Baton for
 * two (and an HTTP hop). Variants: its defaults, and its batching options
 * (a local queue that fetches jobs in batches, completions batched), each
 * after an ANALYZE of its jobs table.
 */
export interface PeerVariant {
  label: string;
  batching: boolean;
}

export const GRAPHILE_VARIANTS: readonly PeerVariant[] = [
  { label: 'graphile-worker, defaults', batching: false },
  { label: 'graphile-worker, batching', batching: true },
];

export interface PeerThroughput {
  label: string;
  jobs: number;
  /** Jobs ÷ (later of last handled and publishers done − first add). */
  jobsPerSec: number;
}

export interface PeerLatency {
  label: string;
  offeredPerSec: number;
  measured: number;
  p50Ms: number;
  p99Ms: number;
}

const CONCURRENCY = 10;
const ADD_JOBS = `SELECT graphile_worker.add_jobs(array(
  SELECT ROW('handle', e, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
  FROM json_array_elements($1::json) AS e))`;
const INSERT_ORDERS = `INSERT INTO orders (client, amount, note)
  SELECT $1, a, 'bench order' FROM unnest($2::int[]) AS a RETURNING id`;

let runNo = 0;

async function startWorker(
  clusters: BenchClusters,
  variant: PeerVariant,
): Promise<{ url: string; pool: pg.Pool; runner: Runner; handled(): Promise<number> }> {
  const { url } = await clusters.database(clusters.producer, `bench_graphile_${++runNo}`, 1);
  const pool = new pg.Pool({ connectionString: url, max: CONCURRENCY + 4 });
  pool.on('error', () => {});
  await pool.query(ORDERS_TABLE_SQL);
  await pool.query(HANDLED_TABLE_SQL);
  const logger = new Logger(() => () => {});
  await runMigrations({ pgPool: pool, logger });
  await pool.query('ANALYZE graphile_worker._private_jobs');
  const runner = await run({
    pgPool: pool,
    logger,
    concurrency: CONCURRENCY,
    noHandleSignals: true,
    pollInterval: 1000,
    preset: variant.batching
      ? {
          worker: {
            localQueue: { size: 4 * CONCURRENCY },
            completeJobBatchDelay: 0,
            failJobBatchDelay: 0,
          },
        }
      : {},
    taskList: {
      handle: async (payload, helpers) => {
        const job = payload as { id: string; key: string };
        await helpers.withPgClient((client) =>
          client.query(
            'INSERT INTO handled (event_id, key, handled_at) VALUES ($1, $2, clock_timestamp())',
            [job.id, job.key],
          ),
        );
      },
    },
  });
  const handled = async () =>
    (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM handled')).rows[0]?.n ?? 0;
  return { url, pool, runner, handled };
}

export async function runGraphileThroughput(
  clusters: BenchClusters,
  variant: PeerVariant,
  options: {
    publishers: number;
    eventsPerTx: number;
    runMs: number;
    maxInFlight: number;
    drainTimeoutMs: number;
  },
): Promise<PeerThroughput> {
  const worker = await startWorker(clusters, variant);
  const clients = await openClients(worker.url, options.publishers);
  let handled = 0;
  let sampling = true;
  const samples: { t: number; n: number }[] = [];
  const sampler = (async () => {
    while (sampling) {
      handled = await worker.handled();
      samples.push({ t: wallMs(), n: handled });
      await sleep(100);
    }
  })();
  try {
    const load = await closedLoop({
      clients,
      durationMs: options.runMs,
      eventsPerTx: options.eventsPerTx,
      blocked: (issued) => issued - handled > options.maxInFlight,
      txn: async (client, index, n) => {
        await client.query('BEGIN');
        const amounts = Array.from({ length: options.eventsPerTx }, (_, j) => j);
        const ids = (await client.query<{ id: string }>(INSERT_ORDERS, [index, amounts])).rows;
        const jobs = ids.map((row, j) => ({
          id: crypto.randomUUID(),
          key: `c${index}-k${(n * options.eventsPerTx + j) % 2500}`,
          orderId: row.id,
        }));
        await client.query(ADD_JOBS, [JSON.stringify(jobs)]);
        await client.query('COMMIT');
        return jobs.length;
      },
    });
    const deadline = wallMs() + options.drainTimeoutMs;
    while (handled < load.events && wallMs() < deadline) await sleep(50);
    sampling = false;
    await sampler;
    const rows = await worker.handled();
    if (rows !== load.events)
      throw new Error(
        `count check failed: ${variant.label} added ${load.events} jobs, handled holds ${rows}; no figure is printed from this run`,
      );
    const lastAt = samples.find((s) => s.n >= load.events)?.t ?? wallMs();
    const result = {
      label: variant.label,
      jobs: load.events,
      jobsPerSec: round(
        (load.events / (Math.max(lastAt, load.endedAt) - load.startedAt)) * 1000,
        0,
      ),
    };
    say(`${variant.label}: ${result.jobsPerSec} jobs/s end to end (${result.jobs} jobs)`);
    return result;
  } finally {
    sampling = false;
    await sampler.catch(() => {});
    await closeClients(clients);
    await worker.runner.stop();
    await worker.pool.end();
  }
}

export async function runGraphileLatency(
  clusters: BenchClusters,
  variant: PeerVariant,
  options: {
    ratePerSec: number;
    events: number;
    clients: number;
    warmupEvents: number;
    drainTimeoutMs: number;
  },
): Promise<PeerLatency> {
  const worker = await startWorker(clusters, variant);
  const clients = await openClients(worker.url, options.clients);
  const committed = new Map<string, number>();
  try {
    const load = await pacedLoop({
      clients,
      ratePerSec: options.ratePerSec,
      count: options.events,
      txn: async (client, index, n) => {
        const id = crypto.randomUUID();
        await client.query('BEGIN');
        await client.query(INSERT_ORDERS, [index, [n % 1000]]);
        await client.query(ADD_JOBS, [JSON.stringify([{ id, key: `order-${n}` }])]);
        await client.query('COMMIT');
        if (n >= options.warmupEvents) committed.set(id, wallMs());
        return 1;
      },
    });
    const deadline = wallMs() + options.drainTimeoutMs;
    while ((await worker.handled()) < options.events && wallMs() < deadline) await sleep(50);
    const rows = await worker.handled();
    if (rows !== options.events)
      throw new Error(
        `count check failed: ${variant.label} added ${options.events} jobs, handled holds ${rows}; no figure is printed from this run`,
      );
    const stamps = await worker.pool.query<{ id: string; ms: number }>(
      'SELECT event_id::text AS id, extract(epoch FROM handled_at)::float8 * 1000 AS ms FROM handled',
    );
    const latencies: number[] = [];
    for (const row of stamps.rows) {
      const at = committed.get(row.id);
      if (at !== undefined) latencies.push(Number(row.ms) - at);
    }
    const result = {
      label: variant.label,
      offeredPerSec: round(load.offeredPerSec, 0),
      measured: latencies.length,
      p50Ms: round(percentile(latencies, 50)),
      p99Ms: round(percentile(latencies, 99)),
    };
    say(
      `${variant.label}: p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms at ${result.offeredPerSec}/s offered (${result.measured} measured)`,
    );
    return result;
  } finally {
    await closeClients(clients);
    await worker.runner.stop();
    await worker.pool.end();
  }
}
