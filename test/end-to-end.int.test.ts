import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createBaton,
  httpFeedSource,
  serveHttp,
  TransactionRolledBackError,
} from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { eventually, freshDatabase, SECRET } from './helpers.ts';

describe('producer → relay → HTTP feed → consumer, separate databases', () => {
  let producerDb: TestDatabase;
  let consumerDb: TestDatabase;
  beforeAll(async () => {
    producerDb = await freshDatabase('e2e_producer');
    consumerDb = await freshDatabase('e2e_consumer');
    await producerDb.db.query('CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL)');
    await consumerDb.db.query(
      'CREATE TABLE names (id text PRIMARY KEY, name text NOT NULL, seen int NOT NULL DEFAULT 1)',
    );
  });
  afterAll(async () => {
    await producerDb?.drop();
    await consumerDb?.drop();
  });

  it('delivers every committed event once, none from rolled-back transactions', async () => {
    const producer = createBaton({ db: producerDb.db, service: 'customers' });
    const consumerBaton = createBaton({ db: consumerDb.db, service: 'orders' });
    const relay = producer.relay({ pollIntervalMs: 50 });
    const feed = producer.feedHandler({ auth: { type: 'hmac', secrets: [SECRET] } });
    const server = await serveHttp((req, signal) => feed.handle(req, signal));
    const consumer = consumerBaton
      .consumer({
        name: 'orders-from-customers',
        source: httpFeedSource({
          name: 'customers',
          url: `${server.url}/baton`,
          auth: { type: 'hmac', secret: SECRET },
        }),
        fetchWaitMs: 500,
      })
      .subscribe('customer.registered', async (event, tx) => {
        const p = event.payload as { id: string; name: string };
        await tx.query(
          'INSERT INTO names (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET seen = names.seen + 1',
          [p.id, p.name],
        );
      });
    await relay.start();
    await consumer.start();
    try {
      for (let i = 0; i < 50; i++) {
        await producerDb.db.transaction(async (tx) => {
          await tx.query('INSERT INTO customers (id, name) VALUES ($1, $2)', [
            `c${i}`,
            `Customer ${i}`,
          ]);
          await producer.publish(tx, {
            type: 'customer.registered',
            key: `c${i}`,
            payload: { id: `c${i}`, name: `Customer ${i}` },
          });
        });
      }
      await expect(
        producerDb.db.transaction(async (tx) => {
          await producer.publish(tx, {
            type: 'customer.registered',
            key: 'ghost',
            payload: { id: 'ghost', name: 'Ghost' },
          });
          throw new Error('rollback');
        }),
      ).rejects.toThrow('rollback');
      await eventually(async () => {
        const r = await consumerDb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM names');
        return r.rows[0]?.n === 50;
      }, '50 customers handled');
      const seen = await consumerDb.db.query<{ max: number }>('SELECT max(seen) AS max FROM names');
      expect(seen.rows[0]?.max).toBe(1);
      const ghost = await consumerDb.db.query("SELECT 1 FROM names WHERE id = 'ghost'");
      expect(ghost.rows).toHaveLength(0);
    } finally {
      await consumer.stop();
      await relay.stop();
      await feed.close();
      await server.close();
    }
  });
});

describe('PgDatabase.transaction', () => {
  it('throws when COMMIT finds the transaction aborted by a caught error (nothing written)', async () => {
    const database = await freshDatabase('tx_rollback');
    try {
      await database.db.query('CREATE TABLE t (n int)');
      await expect(
        database.db.transaction(async (tx) => {
          await tx.query('INSERT INTO t VALUES (1)');
          await tx.query('SELECT 1/0').catch(() => {});
        }),
      ).rejects.toThrow(TransactionRolledBackError);
      const rows = await database.db.query('SELECT * FROM t');
      expect(rows.rows).toHaveLength(0);
    } finally {
      await database.drop();
    }
  });
});
