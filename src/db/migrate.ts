import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '#host';
import { UnsupportedServerError } from '../core/errors.ts';
import type { Database, Executor } from './executor.ts';
import { schemaIdent } from './sql.ts';

/** PostgreSQL 14: `pg_current_snapshot()`, `xid8` and the features the protocols rely on. */
export const MIN_SERVER_VERSION_NUM = 140000;

const MIGRATIONS_DIR = join(packageRoot, 'sql', 'migrations');
const FILE_NAME = /^(\d{6})_([a-z0-9_]+)\.sql$/;

export interface Migration {
  id: number;
  name: string;
  /** SQL text with the schema already substituted. */
  sql: string;
}

/** The migrations shipped with this version of Baton, for the given schema (for review by a DBA too). */
export async function loadMigrations(schema = 'baton'): Promise<Migration[]> {
  const quoted = schemaIdent(schema);
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => FILE_NAME.test(f)).sort();
  return Promise.all(
    files.map(async (file) => {
      const [, id, name] = FILE_NAME.exec(file) as RegExpExecArray;
      const text = await readFile(join(MIGRATIONS_DIR, file), 'utf8');
      return { id: Number(id), name: name as string, sql: text.replaceAll(':schema', quoted) };
    }),
  );
}

export interface MigrateResult {
  applied: number[];
  current: number;
}

/**
 * Brings Baton's schema up to date. Forward-only; each migration runs in its
 * own transaction. Safe when several processes start at once: they serialise
 * on a transaction-level advisory lock keyed by the schema name, and a process
 * that waited finds the work done.
 */
export async function migrate(db: Database, schema = 'baton'): Promise<MigrateResult> {
  await assertSupportedServer(db);
  const quoted = schemaIdent(schema);
  const migrations = await loadMigrations(schema);
  const applied: number[] = [];
  for (const migration of migrations) {
    const ran = await db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [
        `baton:migrate:${schema}`,
      ]);
      await tx.query(`CREATE SCHEMA IF NOT EXISTS ${quoted}`);
      await tx.query(
        `CREATE TABLE IF NOT EXISTS ${quoted}.migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const done = await tx.query(`SELECT 1 FROM ${quoted}.migrations WHERE id = $1`, [
        migration.id,
      ]);
      if (done.rows.length > 0) return false;
      await tx.query(migration.sql);
      await tx.query(`INSERT INTO ${quoted}.migrations (id, name) VALUES ($1, $2)`, [
        migration.id,
        migration.name,
      ]);
      return true;
    });
    if (ran) applied.push(migration.id);
  }
  return { applied, current: migrations.at(-1)?.id ?? 0 };
}

/** The applied migration ids, or an empty list if Baton was never installed in this schema. */
export async function appliedMigrations(db: Executor, schema = 'baton'): Promise<number[]> {
  const exists = await db.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [
    `${schemaIdent(schema)}.migrations`,
  ]);
  if (!exists.rows[0]?.ok) return [];
  const rows = await db.query<{ id: number }>(
    `SELECT id FROM ${schemaIdent(schema)}.migrations ORDER BY id`,
  );
  return rows.rows.map((r) => r.id);
}

export async function assertSupportedServer(db: Database): Promise<void> {
  const result = await db.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
  const version = Number(result.rows[0]?.v);
  if (!(version >= MIN_SERVER_VERSION_NUM)) {
    throw new UnsupportedServerError(version, MIN_SERVER_VERSION_NUM);
  }
}

/** The highest applied migration, or undefined if Baton was never installed in `schema`. */
export async function lastAppliedMigration(
  db: Executor,
  schema: string,
): Promise<number | undefined> {
  const applied = await appliedMigrations(db, schema);
  return applied.at(-1);
}
