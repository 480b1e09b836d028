import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordedCaretaker } from '../src/baton.ts';
import { checkReferencingRows } from '../src/caretaker/referencing-rows.ts';
import type { EntityReplication, Reference } from '../src/index.ts';
import { PgDatabase } from '../src/pg.ts';
import { eventually, SECRET } from './helpers.ts';
import { caughtUp, startService, type TestService } from './support/services.ts';

/*
 * What the chaos harness found once the caretaker repaired during traffic:
 *
 * - a caretaker whose process died mid-run kept every later run out for a
 *   quarter of an hour (its lease was never renewed, and only ran out then);
 * - a replica row set DELETED by hand before the owner's real delete arrived
 *   made the delete skip its policies (the snapshot a `keep` reference copies
 *   never reached the orders);
 * - a replica row set DELETED by hand while a run went on made the check of
 *   referencing rows apply a `cascade` — deleting a live customer's data —
 *   without asking the owner.
 */

let customers: TestService;
let orders: TestService;
let replication: EntityReplication;
const refs: Record<string, Reference> = {};

const owner = (sql: string, values?: unknown[]) => customers.database.db.query(sql, values);
const referrer = (sql: string, values?: unknown[]) => orders.database.db.query(sql, values);
const quietly = (sql: string, values: unknown[]) =>
  orders.database.db.transaction(async (tx) => {
    await tx.query('SET LOCAL session_replication_role = replica');
    await tx.query(sql, values);
  });

beforeAll(async () => {
  customers = await startService('customers');
  orders = await startService('orders');
  await owner('CREATE TABLE customers (id text PRIMARY KEY, name text)');
  customers.baton.entity({ name: 'customer', table: 'customers', key: 'id', fields: ['name'] });
  await customers.baton.install();
  await referrer(
    'CREATE TABLE orders (id serial PRIMARY KEY, customer_id text, customer_name text)',
  );
  await referrer('CREATE TABLE accounts (customer_id text PRIMARY KEY)');
  replication = orders.baton.replicate({
    entity: 'customer',
    owner: orders.ownerClientOf(customers),
    consumer: orders.consumerOf(customers),
  });
  refs.orders = orders.baton.reference({
    table: 'orders',
    column: 'customer_id',
    entity: 'customer',
    onDelete: 'keep',
    snapshotColumns: { name: 'customer_name' },
  });
  refs.accounts = orders.baton.reference({
    table: 'accounts',
    column: 'customer_id',
    entity: 'customer',
    onDelete: 'cascade',
  });
  await orders.baton.install();
  await orders.startConsumers();
});
afterAll(async () => {
  await orders?.stop();
  await customers?.stop();
});

async function customerWithRows(id: string): Promise<void> {
  await owner('INSERT INTO customers VALUES ($1, $2)', [id, `Name of ${id}`]);
  await eventually(() => caughtUp(customers, orders), 'caught up');
  await orders.database.db.transaction(async (tx) => {
    await refs.orders?.check(tx, id);
    await tx.query('INSERT INTO orders (customer_id) VALUES ($1)', [id]);
    await tx.query('INSERT INTO accounts VALUES ($1)', [id]);
  });
}

describe('the caretaker under load', () => {
  it('takes over within its lease from a run whose process died, not a quarter of an hour later', async () => {
    await customerWithRows('lease-1');
    // The referrer stops reading: a run waits at its cut, holding its lease.
    await orders.consumerOf(customers).stop();
    await owner("UPDATE customers SET name = 'moved on' WHERE id = 'lease-1'");
    // Relayed before the run takes its cut, so the cut is past what the stopped referrer has read
    // (a cut taken before the relay numbered it was reached at once: the run ended, a CI flake).
    await eventually(
      async () =>
        (await owner('SELECT count(*)::int AS n FROM baton.outbox WHERE seq IS NULL')).rows[0]
          ?.n === 0,
      'the update relayed',
    );
    const auth = { type: 'hmac' as const, secret: SECRET };
    const dying = new PgDatabase({ connectionString: orders.database.url, max: 2 });
    const first = await recordedCaretaker(dying, { auth, leaseMs: 1_500 });
    const running = first.caretaker.run({ cutTimeoutMs: 30_000 }).catch((e: Error) => e);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Its process dies: connections gone, no release, no renewal.
    await dying.pool.end().catch(() => {});
    dying.pool.removeAllListeners();
    expect(await running).toBeInstanceOf(Error);
    await orders.consumerOf(customers).start();
    const other = await recordedCaretaker(orders.database.db, { auth, leaseMs: 1_500 });
    const started = Date.now();
    let report = await other.caretaker.run();
    while (report.skipped && Date.now() - started < 10_000) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      report = await other.caretaker.run();
    }
    expect(report.skipped, 'a later run could start').toBe(false);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a delete reaching a row set DELETED by hand still applies its policies', async () => {
    await customerWithRows('snap-1');
    await quietly("UPDATE baton.replica_customer SET state = 'DELETED' WHERE id = $1", ['snap-1']);
    await owner("DELETE FROM customers WHERE id = 'snap-1'");
    await eventually(async () => {
      const r = await referrer("SELECT customer_name FROM orders WHERE customer_id = 'snap-1'");
      return r.rows[0]?.customer_name === 'Name of snap-1';
    }, 'the kept order has its snapshot');
    const accounts = await referrer("SELECT 1 FROM accounts WHERE customer_id = 'snap-1'");
    expect(accounts.rows).toEqual([]);
  });

  it('a kept order without its snapshot is found and given it', async () => {
    await customerWithRows('snap-2');
    await owner("DELETE FROM customers WHERE id = 'snap-2'");
    await eventually(() => caughtUp(customers, orders), 'caught up');
    await quietly("UPDATE orders SET customer_name = NULL WHERE customer_id = 'snap-2'", []);
    const dry = await checkReferencingRows(
      orders.database.db,
      replication,
      orders.ownerClientOf(customers),
      {
        repair: false,
        examples: 5,
      },
    );
    expect(dry.find((r) => r.reference === 'orders.customer_id')).toMatchObject({
      policyNotApplied: 1,
    });
    await checkReferencingRows(orders.database.db, replication, orders.ownerClientOf(customers), {
      repair: true,
      examples: 5,
    });
    const r = await referrer("SELECT customer_name FROM orders WHERE customer_id = 'snap-2'");
    expect(r.rows).toEqual([{ customer_name: 'Name of snap-2' }]);
  });

  it("never applies a cascade to a live customer's rows on a replica's word alone", async () => {
    await customerWithRows('live-1');
    await quietly("UPDATE baton.replica_customer SET state = 'DELETED' WHERE id = $1", ['live-1']);
    await checkReferencingRows(orders.database.db, replication, orders.ownerClientOf(customers), {
      repair: true,
      examples: 5,
    });
    const accounts = await referrer("SELECT 1 FROM accounts WHERE customer_id = 'live-1'");
    expect(accounts.rows, "the live customer's account").toHaveLength(1);
    const replica = await referrer("SELECT state FROM baton.replica_customer WHERE id = 'live-1'");
    expect(replica.rows).toEqual([{ state: 'ACTIVE' }]);
  });
});
