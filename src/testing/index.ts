import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../db/embedded.ts';
import { migrate } from '../db/migrate.ts';
import { PgDatabase } from '../db/pg-database.ts';
import { quoteIdent } from '../db/sql.ts';

/**
 * Test helpers: one real PostgreSQL per test run, one migrated template
 * database, and a fresh clone of it per test file (or per test) in
 * milliseconds — `CREATE DATABASE … TEMPLATE` copies files, it does not
 * replay migrations.
 */
export interface TestCluster {
  /** Connection string of the cluster's `postgres` database (for admin work). */
  adminUrl: string;
  templateName: string;
  stop(): Promise<void>;
}

export interface TestDatabase {
  name: string;
  url: string;
  db: PgDatabase;
  /** Closes the pool and drops the database. */
  drop(): Promise<void>;
}

/**
 * Starts an embedded PostgreSQL (or uses `BATON_TEST_DATABASE_URL`, a
 * PostgreSQL ≥ 14 you provide) and creates the migrated template database.
 */
export async function startTestCluster(
  options: { schemas?: string[]; templateName?: string } = {},
): Promise<TestCluster> {
  const templateName = options.templateName ?? 'baton_template';
  let embedded: EmbeddedPostgres | undefined;
  let adminUrl = process.env.BATON_TEST_DATABASE_URL;
  if (!adminUrl) {
    embedded = await startEmbeddedPostgres({
      flags: ['-c', 'fsync=off', '-c', 'full_page_writes=off'],
    });
    adminUrl = embedded.url();
  }
  await admin(adminUrl, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(templateName)}`);
    await c.query(`CREATE DATABASE ${quoteIdent(templateName)}`);
  });
  const db = new PgDatabase({ connectionString: withDatabase(adminUrl, templateName), max: 2 });
  try {
    for (const schema of options.schemas ?? ['baton']) await migrate(db, schema);
  } finally {
    await db.close();
  }
  return {
    adminUrl,
    templateName,
    stop: async () => {
      await embedded?.stop();
    },
  };
}

/** Clones the template into a new database with a unique name. */
export async function createTestDatabase(
  cluster: Pick<TestCluster, 'adminUrl' | 'templateName'>,
  prefix = 'test',
): Promise<TestDatabase> {
  const name = `${prefix
    .replace(/[^a-z0-9_]/gi, '_')
    .toLowerCase()
    .slice(0, 40)}_${randomBytes(4).toString('hex')}`;
  await admin(cluster.adminUrl, (c) =>
    c.query(`CREATE DATABASE ${quoteIdent(name)} TEMPLATE ${quoteIdent(cluster.templateName)}`),
  );
  const url = withDatabase(cluster.adminUrl, name);
  const db = new PgDatabase({ connectionString: url, max: 10 });
  return {
    name,
    url,
    db,
    drop: async () => {
      await db.close();
      await admin(cluster.adminUrl, (c) =>
        c.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`),
      );
    },
  };
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

async function admin<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
