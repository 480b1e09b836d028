import 'reflect-metadata';
import { sql as drizzleSql } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import knexFactory from 'knex';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import postgres from 'postgres';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromDrizzle } from '../src/adapters/drizzle.ts';
import { fromKnex } from '../src/adapters/knex.ts';
import { fromKysely, kyselyOn } from '../src/adapters/kysely.ts';
import { fromPostgresJs } from '../src/adapters/postgres-js.ts';
import { fromTypeORM } from '../src/adapters/typeorm.ts';
import { type Baton, createBaton, type Executor } from '../src/index.ts';
import { pgClient } from '../src/pg.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/*
 * Baton and the ORMs people run, both ways, each against the real library on
 * a real PostgreSQL:
 * - the caller's transaction into Baton: an order row written by the ORM and
 *   the event Baton publishes in the same transaction commit together or not
 *   at all; each adapter runs Baton's statements as PostgreSQL would
 *   (numbered placeholders, repeated and out of order, jsonb's `?`, row counts);
 * - the ORM inside Baton's transaction (`tx` of a step, handler or
 *   participant): its writes commit and roll back with Baton's.
 */

let database: TestDatabase;
let baton: Baton;

beforeAll(async () => {
  database = await freshDatabase('orms');
  baton = createBaton({ db: database.db, service: 'shop' });
  await baton.migrate();
  await database.db.query('CREATE TABLE orders (id text PRIMARY KEY, total integer NOT NULL)');
});
afterAll(async () => {
  await database?.drop();
});

const count = async (sql: string, values: unknown[]) =>
  Number((await database.db.query<{ n: string }>(sql, values)).rows[0]?.n);
const ordersWith = (id: string) => count('SELECT count(*) AS n FROM orders WHERE id = $1', [id]);
const eventsFor = (id: string) =>
  count('SELECT count(*) AS n FROM baton.outbox WHERE key = $1', [`order:${id}`]);

const placed = (id: string) => ({ type: 'order.placed', key: `order:${id}`, payload: { id } });

/** What every adapter must do with Baton's statements. */
async function conforms(exec: Executor): Promise<void> {
  const select = await exec.query(
    `SELECT $2::text AS b, $1::int AS a, $2::text AS again, '{"k": 1}'::jsonb ? 'k' AS has`,
    [7, 'x'],
  );
  expect(select.rows).toEqual([{ b: 'x', a: 7, again: 'x', has: true }]);
  expect(select.rowCount).toBe(1);
  const update = await exec.query('UPDATE orders SET total = total WHERE id = ANY($1::text[])', [
    ['nobody', 'none'],
  ]);
  expect(update.rowCount).toBe(0);
}

interface Case {
  name: string;
  /** Runs `work` in the ORM's own transaction: inserts order `id`, then hands Baton its executor. */
  inTransaction(id: string, work: (exec: Executor) => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

const cases: (() => Case)[] = [
  // each a function: the ORM connects only when its test runs
  () => {
    const sql = postgres(database.url, { max: 2, onnotice: () => {} });
    return {
      name: 'postgres.js',
      inTransaction: async (id, work) => {
        await sql.begin(async (tx) => {
          await tx`INSERT INTO orders VALUES (${id}, 10)`;
          await work(fromPostgresJs(tx));
        });
      },
      close: () => sql.end(),
    };
  },
  () => {
    const db = new Kysely<{ orders: { id: string; total: number } }>({
      dialect: new PostgresDialect({
        pool: new pg.Pool({ connectionString: database.url, max: 2 }),
      }),
    });
    return {
      name: 'Kysely',
      inTransaction: (id, work) =>
        db.transaction().execute(async (trx) => {
          await trx.insertInto('orders').values({ id, total: 10 }).execute();
          await work(fromKysely(trx));
        }),
      close: () => db.destroy(),
    };
  },
  () => {
    const pool = new pg.Pool({ connectionString: database.url, max: 2 });
    const db = drizzlePg({ client: pool });
    return {
      name: 'Drizzle (node-postgres)',
      inTransaction: (id, work) =>
        db.transaction(async (tx) => {
          await tx.execute(drizzleSql`INSERT INTO orders VALUES (${id}, 10)`);
          await work(fromDrizzle(tx));
        }),
      close: () => pool.end(),
    };
  },
  () => {
    const client = postgres(database.url, { max: 2, onnotice: () => {} });
    const db = drizzlePostgresJs({ client });
    return {
      name: 'Drizzle (postgres.js)',
      inTransaction: (id, work) =>
        db.transaction(async (tx) => {
          await tx.execute(drizzleSql`INSERT INTO orders VALUES (${id}, 10)`);
          await work(fromDrizzle(tx));
        }),
      close: () => client.end(),
    };
  },
  () => {
    const knex = knexFactory({ client: 'pg', connection: database.url, pool: { min: 0, max: 2 } });
    return {
      name: 'Knex',
      inTransaction: (id, work) =>
        knex.transaction(async (trx) => {
          await trx('orders').insert({ id, total: 10 });
          await work(fromKnex(trx));
        }),
      close: () => knex.destroy(),
    };
  },
  () => {
    const source = new DataSource({ type: 'postgres', url: database.url, poolSize: 2 });
    return {
      name: 'TypeORM',
      inTransaction: async (id, work) => {
        if (!source.isInitialized) await source.initialize();
        await source.transaction(async (manager) => {
          await manager.query('INSERT INTO orders VALUES ($1, 10)', [id]);
          await work(fromTypeORM(manager));
        });
      },
      close: async () => {
        if (source.isInitialized) await source.destroy();
      },
    };
  },
];

describe("the caller's ORM transaction into Baton", () => {
  it.each(cases.map((make, i) => [i, make] as const))(
    'adapter %i (postgres.js, Kysely, Drizzle ×2, Knex, TypeORM)',
    async (i, make) => {
      const orm = make();
      try {
        await orm
          .inTransaction(`conform-${i}`, async (exec) => {
            await conforms(exec);
            throw new Error('roll back');
          })
          .catch((e: Error) => expect(e.message).toBe('roll back'));

        const kept = `kept-${i}`;
        await orm.inTransaction(kept, async (exec) => {
          await baton.publish(exec, placed(kept));
        });
        expect(
          [await ordersWith(kept), await eventsFor(kept)],
          `${orm.name}: committed together`,
        ).toEqual([1, 1]);

        const undone = `undone-${i}`;
        await orm
          .inTransaction(undone, async (exec) => {
            await baton.publish(exec, placed(undone));
            throw new Error('the business rule said no');
          })
          .catch(() => {});
        expect(
          [await ordersWith(undone), await eventsFor(undone)],
          `${orm.name}: rolled back together`,
        ).toEqual([0, 0]);
      } finally {
        await orm.close();
      }
    },
  );
});

describe("the ORM inside Baton's transaction", () => {
  const bound: [string, (tx: Executor, id: string) => Promise<void>][] = [
    [
      'Drizzle',
      async (tx, id) =>
        void (await drizzlePg({ client: pgClient(tx) }).execute(
          drizzleSql`INSERT INTO orders VALUES (${id}, 20)`,
        )),
    ],
    [
      'Kysely',
      async (tx, id) =>
        void (await kyselyOn<{ orders: { id: string; total: number } }>(tx)
          .insertInto('orders')
          .values({ id, total: 20 })
          .execute()),
    ],
    [
      'Knex',
      async (tx, id) => {
        const knex = knexFactory({ client: 'pg' });
        await knex('orders').insert({ id, total: 20 }).connection(pgClient(tx));
        await knex.destroy();
      },
    ],
  ];

  it.each(bound)('%s commits and rolls back with Baton', async (name, write) => {
    const kept = `in-${name}`;
    await database.db.transaction(async (tx) => {
      await write(tx, kept);
      await baton.publish(tx, placed(kept));
    });
    expect([await ordersWith(kept), await eventsFor(kept)]).toEqual([1, 1]);
    const undone = `in-${name}-undone`;
    await database.db
      .transaction(async (tx) => {
        await write(tx, undone);
        await baton.publish(tx, placed(undone));
        throw new Error('no');
      })
      .catch(() => {});
    expect([await ordersWith(undone), await eventsFor(undone)]).toEqual([0, 0]);
  });

  it('pgClient refuses an executor that has no node-postgres client, saying why', () => {
    expect(() => pgClient({ query: async () => ({ rows: [], rowCount: 0 }) })).toThrow(
      /not a node-postgres client/,
    );
  });
});
