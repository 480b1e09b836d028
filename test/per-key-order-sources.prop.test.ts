import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Baton, createBaton } from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';
import {
  backendPid,
  closeClients,
  isWaitingOnLock,
  openClients,
  readOutbox,
} from './support/ordering-outbox.ts';

/*
 * Per-key order holds across every source of events of a key: an entity's
 * state events (written by the capture trigger, also for plain SQL) and the
 * events a service publishes itself under the same key (`customer:<id>`).
 *
 * Each generated case is a set of pairs of transactions on one key: the
 * first writes, the second writes (it may have to wait for the first), and
 * the second is committed first whenever it can be. With the relay stopped
 * while both commit, the feed must still list the two events in the order
 * their transactions committed.
 */

type Source = 'publish' | 'insert' | 'update' | 'delete' | 'publish-two';
const SOURCES: readonly Source[] = ['publish', 'insert', 'update', 'delete', 'publish-two'];

let t: TestDatabase;
let baton: Baton;
let clients: pg.Client[];

beforeAll(async () => {
  t = await freshDatabase('per_key_sources');
  baton = createBaton({ db: t.db, service: 'customers' });
  await t.db.query('CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL)');
  baton.entity({ name: 'customer', table: 'customers', key: 'id', fields: ['name'] });
  await baton.install();
  clients = await openClients(t.url, 2);
});
afterAll(async () => {
  await closeClients(clients ?? []);
  await t?.drop();
});

/** Runs one source's write for customer `id` on `client` (inside its open transaction). */
async function write(client: pg.Client, source: Source, id: string, tag: string): Promise<void> {
  switch (source) {
    case 'publish':
      await baton.publish(client, {
        type: 'customer.noted',
        key: `customer:${id}`,
        payload: { tag },
      });
      return;
    case 'publish-two':
      await baton.publish(client, [
        { type: 'customer.noted', key: `customer:${id}`, payload: { tag: `${tag}a` } },
        { type: 'customer.noted', key: `customer:${id}`, payload: { tag: `${tag}b` } },
      ]);
      return;
    case 'insert':
      await client.query(
        'INSERT INTO customers (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = excluded.name',
        [id, tag],
      );
      return;
    case 'update':
      await client.query('UPDATE customers SET name = $2 WHERE id = $1', [id, tag]);
      return;
    case 'delete':
      await client.query('DELETE FROM customers WHERE id = $1', [id]);
      return;
  }
}

/** The event ids the client's open transaction has written so far. */
async function written(client: pg.Client): Promise<string[]> {
  const r = await client.query<{ id: string }>(
    'SELECT event_id::text AS id FROM baton.outbox WHERE xmin = pg_current_xact_id()::xid',
  );
  return r.rows.map((row) => row.id);
}

/** Whether the client's statement is still running after a moment (i.e. waits for a lock). */
async function blocked(client: pg.Client, pending: Promise<unknown>): Promise<boolean> {
  const done = await Promise.race([
    pending.then(() => true),
    new Promise<false>((r) => setTimeout(() => r(false), 50)),
  ]);
  if (done) return false;
  return isWaitingOnLock(t.db, await backendPid(client));
}

const pairCase = fc.record({
  existing: fc.boolean(),
  first: fc.constantFrom(...SOURCES),
  second: fc.constantFrom(...SOURCES),
});

describe('per-key order across event sources', () => {
  it('the feed lists a key’s events in commit order, whichever source wrote them', async () => {
    let round = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(pairCase, { minLength: 1, maxLength: 6 }), async (pairs) => {
        round++;
        const [a, b] = clients as [pg.Client, pg.Client];
        const tags: { id: string; committed: string[] }[] = [];
        const writer = new Map<string, 'first' | 'second'>();
        for (const [i, pair] of pairs.entries()) {
          const id = `r${round}p${i}`;
          if (pair.existing) await t.db.query('INSERT INTO customers VALUES ($1, $2)', [id, 'x']);
          const committed: string[] = [];
          await a.query('BEGIN');
          await b.query('BEGIN');
          await write(a, pair.first, id, `${id}:first`);
          for (const e of await written(a)) writer.set(e, 'first');
          const second = write(b, pair.second, id, `${id}:second`).then(async () => {
            for (const e of await written(b)) writer.set(e, 'second');
          });
          if (await blocked(b, second)) {
            // The second waits for the first: the first commits first.
            await a.query('COMMIT');
            committed.push('first');
            await second;
            await b.query('COMMIT');
            committed.push('second');
          } else {
            await second;
            await b.query('COMMIT');
            committed.push('second');
            await a.query('COMMIT');
            committed.push('first');
          }
          tags.push({ id, committed });
        }
        // The relay runs only now: both transactions of every pair committed before it looked.
        while ((await baton.relay().runOnce()) > 0) {}
        const rows = await readOutbox(t.db);
        const feed = await t.db.query<{ key: string; id: string }>(
          'SELECT key, event_id::text AS id FROM baton.outbox WHERE seq IS NOT NULL ORDER BY seq',
        );
        expect(rows.every((r) => r.seq !== null)).toBe(true);
        for (const { id, committed } of tags) {
          // Which transaction wrote each event of this key, in feed order.
          const writers = feed.rows
            .filter((r) => r.key === `customer:${id}` && writer.has(r.id))
            .map((r) => writer.get(r.id) as string);
          const collapsed = writers.filter((w, i) => i === 0 || writers[i - 1] !== w);
          // A write that changed nothing (a delete of a deleted row) emits nothing: compare who wrote.
          const expected = committed.filter((c) => collapsed.includes(c));
          expect(collapsed, `customer ${id}: ${JSON.stringify(pairs)}`).toEqual(expected);
        }
      }),
      { numRuns: 25 },
    );
  });
});
