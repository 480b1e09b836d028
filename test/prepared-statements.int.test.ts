import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryPrepared, statementName } from '../src/db/prepared.ts';
import { createBaton, type Executor } from '../src/index.ts';
import { PgDatabase, withoutPreparedStatements } from '../src/pg.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

let database: TestDatabase;

beforeAll(async () => {
  database = await freshDatabase('prepared_statements');
});
afterAll(async () => {
  await database?.drop();
});

/** The names of the statements this connection holds prepared on the server. */
async function preparedOn(client: pg.ClientBase): Promise<string[]> {
  const r = await client.query<{ name: string }>(
    `SELECT name FROM pg_prepared_statements WHERE name LIKE 'baton\\_%' ORDER BY name`,
  );
  return r.rows.map((row) => row.name);
}

const event = { type: 'order.placed', key: 'o-1', payload: { id: 'o-1' } };

describe('prepared statements', () => {
  it('names a text by its content: the same text, the same name; another text, another name', () => {
    const a = statementName('SELECT $1::int');
    expect(statementName('SELECT $1::int')).toBe(a);
    expect(statementName('SELECT $1::bigint')).not.toBe(a);
    expect(a).toMatch(/^baton_[0-9a-f]{24}$/);
  });

  it("prepares publish's statement once on the caller's pg client and reuses it", async () => {
    const baton = createBaton({ db: database.db, service: 'orders', notifyOnPublish: false });
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      expect(await preparedOn(client)).toEqual([]);
      for (let i = 0; i < 3; i++) {
        await client.query('BEGIN');
        await baton.publish(client, event);
        await client.query('COMMIT');
      }
      // One statement, prepared once, although it ran three times.
      expect(await preparedOn(client)).toHaveLength(1);
      const r = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM baton.outbox WHERE key = 'o-1'`,
      );
      expect(r.rows[0]?.n).toBe(3);
    } finally {
      await client.end();
    }
  });

  it('prepares nothing on a client marked withoutPreparedStatements, with the same result', async () => {
    const baton = createBaton({ db: database.db, service: 'orders', notifyOnPublish: false });
    const client = withoutPreparedStatements(new pg.Client({ connectionString: database.url }));
    await client.connect();
    try {
      await client.query('BEGIN');
      const [published] = await baton.publish(client, { ...event, key: 'o-2' });
      await client.query('COMMIT');
      expect(published?.version).toBe(1);
      expect(await preparedOn(client)).toEqual([]);
    } finally {
      await client.end();
    }
  });

  it("keeps Baton's own connections free of prepared statements with preparedStatements: false", async () => {
    const pool = new pg.Pool({ connectionString: database.url, max: 1 });
    const db = new PgDatabase({ pool, preparedStatements: false });
    try {
      const baton = createBaton({ db, service: 'orders', notifyOnPublish: false });
      await db.transaction((tx) => baton.publish(tx, { ...event, key: 'o-3' }));
      await queryPrepared(db, 'SELECT $1::int AS one', [1]);
      const client = await pool.connect();
      try {
        expect(await preparedOn(client)).toEqual([]);
      } finally {
        client.release();
      }
    } finally {
      await pool.end();
    }
  });

  it("prepares on Baton's own connections by default (the transaction's client too)", async () => {
    const pool = new pg.Pool({ connectionString: database.url, max: 1 });
    const db = new PgDatabase({ pool });
    try {
      const baton = createBaton({ db, service: 'orders', notifyOnPublish: false });
      await db.transaction((tx) => baton.publish(tx, { ...event, key: 'o-4' }));
      const r = await queryPrepared<{ one: number }>(db, 'SELECT $1::int AS one', [1]);
      expect(r.rows[0]?.one).toBe(1);
      const client = await pool.connect();
      try {
        expect(await preparedOn(client)).toContain(statementName('SELECT $1::int AS one'));
        expect(await preparedOn(client)).toHaveLength(2);
      } finally {
        client.release();
      }
    } finally {
      await pool.end();
    }
  });

  it('runs plainly on an executor of another client library (only query)', async () => {
    const seen: { text: string; values: unknown[] | undefined }[] = [];
    const adapter: Executor = {
      query: (text, values) => {
        seen.push({ text, values });
        return database.db.query(text, values);
      },
    };
    const r = await queryPrepared<{ two: number }>(adapter, 'SELECT $1::int + 1 AS two', [1]);
    expect(r.rows[0]?.two).toBe(2);
    expect(seen).toEqual([{ text: 'SELECT $1::int + 1 AS two', values: [1] }]);
  });
});
