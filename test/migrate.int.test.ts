import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { appliedMigrations, assertSupportedServer, loadMigrations } from '../src/db/migrate.ts';
import {
  createBaton,
  type Database,
  INBOX_STATES,
  InvalidInputError,
  MIN_SERVER_VERSION_NUM,
  migrate,
  UnsupportedServerError,
} from '../src/index.ts';
import { PgDatabase } from '../src/pg.ts';
import { withDatabase } from '../src/testing/index.ts';

/** Runs `sql` on the cluster's admin database. */
async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: inject('pgAdminUrl') });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** A new, completely empty database (not a clone of the migrated template). */
async function emptyDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `migrate_empty_${randomBytes(4).toString('hex')}`;
  await admin(`CREATE DATABASE ${name}`);
  return {
    url: withDatabase(inject('pgAdminUrl'), name),
    drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

async function tablesIn(db: Database, schema: string): Promise<string[]> {
  const r = await db.query<{ t: string }>(
    `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`,
    [schema],
  );
  return r.rows.map((x) => x.t);
}

/** Every table the shipped migrations create (messaging, references, sagas), plus the migrations record. */
const BATON_TABLES = [
  'barrier',
  'data_loss',
  'delete_fences',
  'delete_votes',
  'entities',
  'entity_references',
  'idempotency_keys',
  'inbox',
  'migrations',
  'outbox',
  'policy_actions',
  'quarantine',
  'reconcile_runs',
  'relay_state',
  'replicas',
  'saga_keys',
  'saga_steps',
  'sagas',
  'seen_nonces',
  'settings',
  'stream_versions',
  'subscriptions',
  'tombstones',
  'version_gates',
  'version_skips',
];

describe('migrate on an empty database', () => {
  let empty: { url: string; drop(): Promise<void> };
  const pools: PgDatabase[] = [];
  const open = (max = 2) => {
    const db = new PgDatabase({ connectionString: empty.url, max });
    pools.push(db);
    return db;
  };

  beforeAll(async () => {
    empty = await emptyDatabase();
  });
  afterAll(async () => {
    for (const db of pools) await db.close();
    await empty?.drop();
  });

  it('lets 5 processes migrate at once: all succeed, each migration applied exactly once', async () => {
    const shipped = (await loadMigrations()).map((m) => m.id);
    expect(shipped.length).toBeGreaterThan(0);
    const dbs = Array.from({ length: 5 }, () => open());
    expect(await tablesIn(dbs[0] as Database, 'baton')).toEqual([]);

    const results = await Promise.all(dbs.map((db) => migrate(db)));

    for (const r of results) expect(r.current).toBe(shipped.at(-1));
    // Every migration was applied by exactly one of them; the others found it done.
    const appliedBy = results.flatMap((r) => r.applied).sort((a, b) => a - b);
    expect(appliedBy).toEqual(shipped);
    const rows = await (dbs[0] as Database).query<{ id: number; n: number }>(
      'SELECT id, count(*)::int AS n FROM baton.migrations GROUP BY id ORDER BY id',
    );
    expect(rows.rows).toEqual(shipped.map((id) => ({ id, n: 1 })));
    expect(await tablesIn(dbs[0] as Database, 'baton')).toEqual(BATON_TABLES);
    expect(await appliedMigrations(dbs[0] as Database)).toEqual(shipped);
  });

  it('is a no-op the second (and third) time', async () => {
    const db = open();
    const before = await db.query('SELECT id, name, applied_at FROM baton.migrations ORDER BY id');
    const state = await db.query('SELECT * FROM baton.relay_state');
    expect((await migrate(db)).applied).toEqual([]);
    expect((await migrate(db)).applied).toEqual([]);
    expect(
      (await db.query('SELECT id, name, applied_at FROM baton.migrations ORDER BY id')).rows,
    ).toEqual(before.rows);
    expect((await db.query('SELECT * FROM baton.relay_state')).rows).toEqual(state.rows);
  });

  it('installs into a custom schema, independent of the default one', async () => {
    const db = open();
    const result = await migrate(db, 'orders_messaging');
    expect(result.applied).toEqual((await loadMigrations()).map((m) => m.id));
    expect(await tablesIn(db, 'orders_messaging')).toEqual(BATON_TABLES);
    expect((await migrate(db, 'orders_messaging')).applied).toEqual([]);

    const custom = createBaton({ db, service: 'orders', schema: 'orders_messaging' });
    expect((await custom.migrate()).applied).toEqual([]);
    await db.transaction((tx) =>
      custom.publish(tx, { type: 'order.placed', key: 'o1', payload: { id: 'o1' } }),
    );
    expect(await custom.relay().runOnce()).toBe(1);
    const counts = await db.query<{ custom: number; dflt: number }>(
      `SELECT (SELECT count(*)::int FROM orders_messaging.outbox) AS custom,
              (SELECT count(*)::int FROM baton.outbox) AS dflt`,
    );
    expect(counts.rows[0]).toEqual({ custom: 1, dflt: 0 });
  });

  it('refuses an invalid schema name with InvalidInputError, creating nothing', async () => {
    const db = open();
    for (const schema of [
      'Baton',
      'my-schema',
      '1baton',
      'baton"; DROP TABLE x; --',
      '',
      'a'.repeat(64),
      'bä',
    ]) {
      await expect(migrate(db, schema), JSON.stringify(schema)).rejects.toBeInstanceOf(
        InvalidInputError,
      );
      await expect(migrate(db, schema)).rejects.toThrow(
        /schema name .* is not allowed: use lower-case letters/,
      );
      expect(() => createBaton({ db, service: 'x', schema })).toThrow(InvalidInputError);
    }
    const schemas = await db.query<{ n: string }>(
      `SELECT nspname AS n FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1`,
    );
    expect(schemas.rows.map((r) => r.n)).toEqual(['baton', 'orders_messaging', 'public']);
  });
});

describe('inbox.status CHECK', () => {
  let empty: { url: string; drop(): Promise<void> };
  let db: PgDatabase;
  beforeAll(async () => {
    empty = await emptyDatabase();
    db = new PgDatabase({ connectionString: empty.url, max: 2 });
    await migrate(db);
    await db.query(`INSERT INTO baton.subscriptions (name, source) VALUES ('s', 'src')`);
  });
  afterAll(async () => {
    await db?.close();
    await empty?.drop();
  });

  const insert = (status: string) =>
    db.query(
      `INSERT INTO baton.inbox (subscription, position, key, status) VALUES ('s', '1', 'k', $1)`,
      [status],
    );

  it.each([...INBOX_STATES])('accepts the state %s', async (state) => {
    await insert(state);
    const r = await db.query('SELECT 1 FROM baton.inbox WHERE status = $1', [state]);
    expect(r.rows.length).toBeGreaterThan(0);
  });

  it.each(['failed', 'Pending', 'retrying', '', 'pending '])(
    'refuses the state %j',
    async (state) => {
      await expect(insert(state)).rejects.toMatchObject({ code: '23514' });
    },
  );

  it('lists exactly INBOX_STATES in the constraint', async () => {
    const r = await db.query<{ def: string }>(
      `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint
       WHERE conrelid = 'baton.inbox'::regclass AND contype = 'c'`,
    );
    const defs = r.rows.map((x) => x.def).filter((d) => d.includes('status'));
    expect(defs).toHaveLength(1);
    const listed = [...(defs[0] as string).matchAll(/'([a-z]+)'::text/g)].map((m) => m[1]);
    expect(listed.sort()).toEqual([...INBOX_STATES].sort());
  });
});

describe('assertSupportedServer', () => {
  /** A Database that only answers the version query (a pure unit; no server needed). */
  function fakeServer(versionNum: string | undefined): Database {
    const fail = () => Promise.reject(new Error('not used'));
    return {
      query: async <R>() => ({
        rows: (versionNum === undefined ? [] : [{ v: versionNum }]) as R[],
        rowCount: versionNum === undefined ? 0 : 1,
      }),
      transaction: fail,
      listen: fail,
      close: async () => {},
    };
  }

  it('refuses PostgreSQL 13, naming the detected and the required version', async () => {
    const check = assertSupportedServer(fakeServer('130000'));
    await expect(check).rejects.toBeInstanceOf(UnsupportedServerError);
    await expect(check).rejects.toMatchObject({
      code: 'BATON_UNSUPPORTED_SERVER',
      serverVersionNum: 130000,
      requiredVersionNum: MIN_SERVER_VERSION_NUM,
      message: expect.stringMatching(
        /requires PostgreSQL 14 or greater \(detected server_version_num = 130000\)/,
      ),
    });
  });

  it('refuses before touching the schema: migrate() on a too-old server creates nothing', async () => {
    const seen: string[] = [];
    const old = fakeServer('120015');
    const recording: Database = {
      ...old,
      query: (text, values) => {
        seen.push(text);
        return old.query(text, values);
      },
    };
    await expect(migrate(recording)).rejects.toBeInstanceOf(UnsupportedServerError);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(/server_version_num/);
  });

  it('refuses an unreadable answer, and accepts 14 and later', async () => {
    await expect(assertSupportedServer(fakeServer(undefined))).rejects.toBeInstanceOf(
      UnsupportedServerError,
    );
    await expect(assertSupportedServer(fakeServer('banana'))).rejects.toBeInstanceOf(
      UnsupportedServerError,
    );
    await expect(assertSupportedServer(fakeServer('139999'))).rejects.toBeInstanceOf(
      UnsupportedServerError,
    );
    await expect(assertSupportedServer(fakeServer('140000'))).resolves.toBeUndefined();
    await expect(assertSupportedServer(fakeServer('180001'))).resolves.toBeUndefined();
  });
});
