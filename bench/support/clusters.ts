import os from 'node:os';
import pg from 'pg';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { PgDatabase } from '../../src/db/pg-database.ts';
import { quoteIdent } from '../../src/db/sql.ts';

/**
 * Two durable embedded PostgreSQL clusters: one for the producing service,
 * one for the consuming service, so the two do not share a WAL or a
 * checkpointer (as two real services would not). Defaults are PostgreSQL's
 * own: fsync, synchronous_commit and full_page_writes stay on.
 */
export interface BenchClusters {
  producer: EmbeddedPostgres;
  consumer: EmbeddedPostgres;
  settings: Record<string, string>;
  /** Creates a fresh database on a cluster; returns its URL and a `PgDatabase`. */
  database(
    cluster: EmbeddedPostgres,
    name: string,
    poolSize?: number,
  ): Promise<{ url: string; db: PgDatabase }>;
  stop(): Promise<void>;
}

const REPORTED_SETTINGS = [
  'server_version',
  'fsync',
  'synchronous_commit',
  'full_page_writes',
  'wal_sync_method',
  'shared_buffers',
  'max_wal_size',
  'data_directory',
];

export async function startBenchClusters(): Promise<BenchClusters> {
  const [producer, consumer] = await Promise.all([
    startEmbeddedPostgres(),
    startEmbeddedPostgres(),
  ]);
  const settings = await readSettings(producer.url());
  if (settings.fsync !== 'on' || settings.synchronous_commit !== 'on') {
    throw new Error(`benchmark clusters must be durable; got ${JSON.stringify(settings)}`);
  }
  const dbs: PgDatabase[] = [];
  return {
    producer,
    consumer,
    settings,
    async database(cluster, name, poolSize = 10) {
      const admin = new pg.Client({ connectionString: cluster.url() });
      await admin.connect();
      try {
        await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
        await admin.query(`CREATE DATABASE ${quoteIdent(name)}`);
      } finally {
        await admin.end();
      }
      const url = cluster.url(name);
      const db = new PgDatabase({ connectionString: url, max: poolSize, applicationName: 'bench' });
      dbs.push(db);
      return { url, db };
    },
    async stop() {
      await Promise.all(dbs.map((d) => d.close().catch(() => {})));
      await Promise.all([producer.stop(), consumer.stop()]);
    },
  };
}

async function readSettings(url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const r = await client.query<{ name: string; setting: string }>(
      `SELECT name, current_setting(name) AS setting FROM unnest($1::text[]) AS name`,
      [REPORTED_SETTINGS],
    );
    return Object.fromEntries(r.rows.map((row) => [row.name, row.setting]));
  } finally {
    await client.end();
  }
}

/** What the figures were measured on. */
export function machine(): Record<string, string | number> {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    loadAverage1m: Math.round((os.loadavg()[0] ?? 0) * 100) / 100,
  };
}
