import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReferenceViolation } from '../src/index.ts';
import type { Reference } from '../src/references/reference.ts';
import { eventually } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

describe('references: owner entity → referrer replica, checked on write, keep policy', () => {
  let customers: TestService;
  let orders: TestService;
  let ref: Reference;

  beforeAll(async () => {
    customers = await startService('customers');
    orders = await startService('orders');
    await customers.database.db.query(
      'CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL, address text, secret text)',
    );
    customers.baton.entity({
      name: 'customer',
      table: 'customers',
      key: 'id',
      fields: ['name', 'address'],
      personal: ['name', 'address'],
    });
    await customers.baton.install();

    await orders.database.db.query(
      'CREATE TABLE orders (id serial PRIMARY KEY, customer_id text, customer_name text, customer_address text)',
    );
    orders.baton.replicate({
      entity: 'customer',
      owner: orders.ownerClientOf(customers),
      consumer: orders.consumerOf(customers),
    });
    ref = orders.baton.reference({
      table: 'orders',
      column: 'customer_id',
      entity: 'customer',
      onDelete: 'keep',
      snapshotColumns: { name: 'customer_name', address: 'customer_address' },
    });
    await orders.baton.install();
    await orders.startConsumers();
  });
  afterAll(async () => {
    await orders?.stop();
    await customers?.stop();
  });

  const replica = async (id: string) =>
    (
      await orders.database.db.query<{
        state: string;
        version: string;
        fields: Record<string, unknown>;
      }>('SELECT state, version, fields FROM baton.replica_customer WHERE id = $1', [id])
    ).rows[0];

  it('captures plain-SQL inserts, updates and deletes of the owner table as versioned state events', async () => {
    await customers.database.db.query("INSERT INTO customers VALUES ('c1', 'Ada', 'London', 'x')");
    await customers.database.db.query("UPDATE customers SET secret = 'y' WHERE id = 'c1'"); // not a copied field: no event
    await customers.database.db.query("UPDATE customers SET address = 'Paris' WHERE id = 'c1'");
    await eventually(
      async () => (await replica('c1'))?.version === '2',
      'replica of c1 at version 2',
    );
    expect(await replica('c1')).toEqual({
      state: 'ACTIVE',
      version: '2',
      fields: { name: 'Ada', address: 'Paris' },
    });
  });

  it('checks on write: an order for a known customer goes in; unknown ids are refused with a typed error', async () => {
    await orders.database.db.transaction(async (tx) => {
      await ref.check(tx, 'c1');
      await tx.query("INSERT INTO orders (customer_id) VALUES ('c1')");
    });
    const error = await orders.database.db
      .transaction((tx) => ref.check(tx, 'nobody'))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReferenceViolation);
    expect(error).toMatchObject({
      table: 'orders',
      column: 'customer_id',
      entity: 'customer',
      id: 'nobody',
      state: 'unknown to its owner',
      reason: 'unknown',
      retryable: false,
    });
  });

  it('a plain-SQL insert that skips the check is still refused by the trigger (and translated)', async () => {
    const error = await orders.database.db
      .query("INSERT INTO orders (customer_id) VALUES ('ghost')")
      .catch((e: unknown) => orders.baton.referenceError(e));
    expect(error).toBeInstanceOf(ReferenceViolation);
    expect((error as ReferenceViolation).message).toMatch(
      /orders\.customer_id = "ghost" refers to customer "ghost", which is unknown/,
    );
    expect(error).toMatchObject({ reason: 'unknown', code: 'BATON_REFERENCE_VIOLATION' });
  });

  it('looks up an id the replica has never seen from its owner before deciding', async () => {
    await orders.consumerOf(customers).stop();
    try {
      await customers.database.db.query(
        "INSERT INTO customers VALUES ('c2', 'Grace', 'Arlington', NULL)",
      );
      await orders.database.db.transaction(async (tx) => {
        await ref.check(tx, 'c2');
        await tx.query("INSERT INTO orders (customer_id) VALUES ('c2')");
      });
      expect(await replica('c2')).toMatchObject({ state: 'ACTIVE', version: '1' });
    } finally {
      await orders.consumerOf(customers).start();
    }
  });

  it('keeps the orders of a deleted customer with a snapshot, and refuses new ones', async () => {
    await customers.database.db.query("DELETE FROM customers WHERE id = 'c1'");
    await eventually(
      async () => (await replica('c1'))?.state === 'DELETED',
      'c1 deleted in the replica',
    );
    const kept = await orders.database.db.query(
      "SELECT customer_name, customer_address FROM orders WHERE customer_id = 'c1'",
    );
    expect(kept.rows).toEqual([{ customer_name: 'Ada', customer_address: 'Paris' }]);
    const error = await orders.database.db
      .transaction((tx) => ref.check(tx, 'c1'))
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ state: 'deleted', reason: 'deleted', retryable: false });
    const tomb = await customers.database.db.query(
      "SELECT version FROM baton.tombstones WHERE entity = 'customer' AND id = 'c1'",
    );
    expect(tomb.rows).toEqual([{ version: '3' }]);
  });
});
