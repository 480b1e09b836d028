import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Reference } from '../src/references/reference.ts';
import {
  CUSTOMERS_DDL,
  count,
  declareCustomer,
  expectConsistent,
  replicaRow,
  waitForReplica,
} from './support/refs-fixtures.ts';
import { startService, type TestService } from './support/services.ts';

/**
 * Every on-delete policy end to end over real HTTP between separate
 * databases: customers (owner) → orders (cascade; orders is itself an
 * entity) → shipments (cascade), and tickets (set-null), invoices (keep),
 * reviews (anonymise), one referring service per policy.
 */
describe('on-delete policies across services', () => {
  let customers: TestService;
  let orders: TestService;
  let shipments: TestService;
  let tickets: TestService;
  let invoices: TestService;
  let reviews: TestService;
  const refs: Record<string, Reference> = {};

  beforeAll(async () => {
    [customers, orders, shipments, tickets, invoices, reviews] = await Promise.all([
      startService('customers'),
      startService('orders'),
      startService('shipments'),
      startService('tickets'),
      startService('invoices'),
      startService('reviews'),
    ]);
    await customers.database.db.query(CUSTOMERS_DDL);
    declareCustomer(customers);
    await customers.baton.install();

    const referrer = async (
      service: TestService,
      ddl: string,
      def: Omit<Parameters<TestService['baton']['reference']>[0], 'entity'>,
      from: TestService = customers,
      entity = 'customer',
    ) => {
      await service.database.db.query(ddl);
      if (service === orders) {
        orders.baton.entity({
          name: 'order',
          table: 'orders',
          key: 'id',
          fields: ['customer_id', 'total'],
        });
      }
      service.baton.replicate({
        entity,
        owner: service.ownerClientOf(from),
        consumer: service.consumerOf(from),
      });
      refs[service.name] = service.baton.reference({ ...def, entity });
      await service.baton.install();
    };
    await referrer(
      orders,
      'CREATE TABLE orders (id serial PRIMARY KEY, customer_id text, total int NOT NULL)',
      { table: 'orders', column: 'customer_id', onDelete: 'cascade' },
    );
    await referrer(
      shipments,
      'CREATE TABLE shipments (id serial PRIMARY KEY, order_id integer NOT NULL, carrier text)',
      { table: 'shipments', column: 'order_id', onDelete: 'cascade' },
      orders,
      'order',
    );
    await referrer(
      tickets,
      'CREATE TABLE tickets (id serial PRIMARY KEY, customer_id text, subject text NOT NULL)',
      { table: 'tickets', column: 'customer_id', onDelete: 'set-null' },
    );
    await referrer(
      invoices,
      `CREATE TABLE invoices (id serial PRIMARY KEY, customer_id text, amount int NOT NULL,
         customer_name text, customer_address text, customer_tier text)`,
      {
        table: 'invoices',
        column: 'customer_id',
        onDelete: 'keep',
        snapshotColumns: {
          name: 'customer_name',
          address: 'customer_address',
          tier: 'customer_tier',
        },
      },
    );
    await referrer(
      reviews,
      `CREATE TABLE reviews (id serial PRIMARY KEY, customer_id text, body text NOT NULL,
         author_name text, author_tier text)`,
      {
        table: 'reviews',
        column: 'customer_id',
        onDelete: 'anonymise',
        snapshotColumns: { name: 'author_name', tier: 'author_tier' },
      },
    );
    for (const s of [orders, shipments, tickets, invoices, reviews]) await s.startConsumers();
  });

  afterAll(async () => {
    for (const s of [reviews, invoices, tickets, shipments, orders, customers]) await s?.stop();
  });

  /** The application's write path: check, then insert, in one transaction. */
  async function refer(
    service: TestService,
    id: string | number,
    sql: string,
    params: unknown[] = [],
  ) {
    return service.database.db.transaction(async (tx) => {
      await (refs[service.name] as Reference).check(tx, id);
      const r = await tx.query<{ id: number }>(`${sql} RETURNING id`, params);
      return r.rows[0]?.id as number;
    });
  }

  const addCustomer = (id: string, name: string, address: string, tier = 'gold') =>
    customers.database.db.query(
      'INSERT INTO customers (id, name, address, tier) VALUES ($1, $2, $3, $4)',
      [id, name, address, tier],
    );
  const policyActions = (service: TestService, entityId: string) =>
    service.database.db
      .query<{ reference: string; policy: string; affected: string; apology: boolean }>(
        'SELECT reference, policy, affected, apology FROM baton.policy_actions WHERE entity_id = $1 ORDER BY id',
        [entityId],
      )
      .then((r) => r.rows);

  it('cascade: the referencing rows of a deleted customer are deleted, others stay; one policy action with the count', async () => {
    await addCustomer('cas1', 'Ada', 'London');
    await addCustomer('cas2', 'Bob', 'Leeds');
    await refer(orders, 'cas1', 'INSERT INTO orders (customer_id, total) VALUES ($1, 10)', [
      'cas1',
    ]);
    await refer(orders, 'cas1', 'INSERT INTO orders (customer_id, total) VALUES ($1, 20)', [
      'cas1',
    ]);
    await refer(orders, 'cas2', 'INSERT INTO orders (customer_id, total) VALUES ($1, 30)', [
      'cas2',
    ]);

    await customers.database.db.query("DELETE FROM customers WHERE id = 'cas1'");
    await waitForReplica(orders, 'customer', 'cas1', { state: 'DELETED' });
    const left = await orders.database.db.query(
      'SELECT customer_id, total FROM orders WHERE customer_id IN ($1, $2) ORDER BY total',
      ['cas1', 'cas2'],
    );
    expect(left.rows).toEqual([{ customer_id: 'cas2', total: 30 }]);
    expect(await policyActions(orders, 'cas1')).toEqual([
      { reference: 'orders.customer_id', policy: 'cascade', affected: '2', apology: false },
    ]);
  });

  it('set-null: the referencing column is cleared, the rows stay', async () => {
    await addCustomer('sn1', 'Cy', 'York');
    const t1 = await refer(
      tickets,
      'sn1',
      'INSERT INTO tickets (customer_id, subject) VALUES ($1, $2)',
      ['sn1', 'a'],
    );
    const t2 = await refer(
      tickets,
      'sn1',
      'INSERT INTO tickets (customer_id, subject) VALUES ($1, $2)',
      ['sn1', 'b'],
    );
    await customers.database.db.query("DELETE FROM customers WHERE id = 'sn1'");
    await waitForReplica(tickets, 'customer', 'sn1', { state: 'DELETED' });
    const rows = await tickets.database.db.query(
      'SELECT id, customer_id, subject FROM tickets WHERE id = ANY($1) ORDER BY id',
      [[t1, t2]],
    );
    expect(rows.rows).toEqual([
      { id: t1, customer_id: null, subject: 'a' },
      { id: t2, customer_id: null, subject: 'b' },
    ]);
    expect(await policyActions(tickets, 'sn1')).toEqual([
      { reference: 'tickets.customer_id', policy: 'set-null', affected: '2', apology: false },
    ]);
  });

  it('keep: the row stays with its snapshot columns filled from the last version; the replica keeps the snapshot', async () => {
    await addCustomer('kp1', 'Dee', 'Bath', 'silver');
    const inv = await refer(
      invoices,
      'kp1',
      'INSERT INTO invoices (customer_id, amount) VALUES ($1, 99)',
      ['kp1'],
    );
    // A later update travels too: the snapshot is the last version before the delete.
    await customers.database.db.query("UPDATE customers SET address = 'Wells' WHERE id = 'kp1'");
    await customers.database.db.query("DELETE FROM customers WHERE id = 'kp1'");
    const replica = await waitForReplica(invoices, 'customer', 'kp1', {
      state: 'DELETED',
      version: 3,
    });
    expect(replica.fields).toEqual({ name: 'Dee', address: 'Wells', tier: 'silver' });
    const row = await invoices.database.db.query('SELECT * FROM invoices WHERE id = $1', [inv]);
    expect(row.rows).toEqual([
      {
        id: inv,
        customer_id: 'kp1',
        amount: 99,
        customer_name: 'Dee',
        customer_address: 'Wells',
        customer_tier: 'silver',
      },
    ]);
    expect(await policyActions(invoices, 'kp1')).toEqual([
      { reference: 'invoices.customer_id', policy: 'keep', affected: '1', apology: false },
    ]);
  });

  it('anonymise: the row stays; personal fields are nulled in the snapshot columns and in the replica, the rest kept', async () => {
    await addCustomer('an1', 'Eve', 'Hull', 'bronze');
    const rv = await refer(
      reviews,
      'an1',
      'INSERT INTO reviews (customer_id, body) VALUES ($1, $2)',
      ['an1', 'great'],
    );
    await customers.database.db.query("DELETE FROM customers WHERE id = 'an1'");
    const replica = await waitForReplica(reviews, 'customer', 'an1', { state: 'DELETED' });
    expect(replica.fields).toEqual({ name: null, address: null, tier: 'bronze' });
    const row = await reviews.database.db.query('SELECT * FROM reviews WHERE id = $1', [rv]);
    expect(row.rows).toEqual([
      { id: rv, customer_id: 'an1', body: 'great', author_name: null, author_tier: 'bronze' },
    ]);
    expect(await policyActions(reviews, 'an1')).toEqual([
      { reference: 'reviews.customer_id', policy: 'anonymise', affected: '1', apology: false },
    ]);
  });

  it('transitive cascade over three services: customer → its orders → their shipments', async () => {
    await addCustomer('tc1', 'Fay', 'Ely');
    await addCustomer('tc2', 'Gus', 'Ely');
    const o1 = await refer(
      orders,
      'tc1',
      'INSERT INTO orders (customer_id, total) VALUES ($1, 1)',
      ['tc1'],
    );
    const o2 = await refer(
      orders,
      'tc1',
      'INSERT INTO orders (customer_id, total) VALUES ($1, 2)',
      ['tc1'],
    );
    const o3 = await refer(
      orders,
      'tc2',
      'INSERT INTO orders (customer_id, total) VALUES ($1, 3)',
      ['tc2'],
    );
    for (const [order, n] of [
      [o1, 2],
      [o2, 1],
      [o3, 1],
    ] as const) {
      for (let i = 0; i < n; i++)
        await refer(shipments, order, 'INSERT INTO shipments (order_id, carrier) VALUES ($1, $2)', [
          order,
          `c${i}`,
        ]);
    }
    await customers.database.db.query("DELETE FROM customers WHERE id = 'tc1'");
    await waitForReplica(shipments, 'order', o1, { state: 'DELETED' });
    await waitForReplica(shipments, 'order', o2, { state: 'DELETED' });
    const left = await shipments.database.db.query<{ order_id: number }>(
      'SELECT order_id FROM shipments WHERE order_id = ANY($1) ORDER BY id',
      [[o1, o2, o3]],
    );
    expect(left.rows).toEqual([{ order_id: o3 }]);
    expect(
      await count(orders.database.db, 'SELECT 1 FROM orders WHERE id = ANY($1)', [[o1, o2, o3]]),
    ).toBe(1);
    // The orders' own tombstones carry their last fields.
    const tombs = await orders.database.db.query(
      "SELECT id, fields FROM baton.tombstones WHERE entity = 'order' AND id = ANY($1) ORDER BY id::int",
      [[String(o1), String(o2)]],
    );
    expect(tombs.rows).toEqual([
      { id: String(o1), fields: { customer_id: 'tc1', total: 1 } },
      { id: String(o2), fields: { customer_id: 'tc1', total: 2 } },
    ]);
    expect(await policyActions(orders, 'tc1')).toMatchObject([
      { policy: 'cascade', affected: '2' },
    ]);
    expect(await policyActions(shipments, String(o1))).toMatchObject([
      { reference: 'shipments.order_id', policy: 'cascade', affected: '2' },
    ]);
    expect(await policyActions(shipments, String(o2))).toMatchObject([{ affected: '1' }]);
  });

  describe('entity capture edge cases (plain SQL on the owner table)', () => {
    const events = async () =>
      count(
        customers.database.db,
        "SELECT 1 FROM baton.outbox WHERE type = 'baton.entity.customer'",
      );

    it('a key change is the delete of the old id and the insert of the new one', async () => {
      await addCustomer('key1', 'Hal', 'Ayr');
      await refer(orders, 'key1', 'INSERT INTO orders (customer_id, total) VALUES ($1, 5)', [
        'key1',
      ]);
      await customers.database.db.query("UPDATE customers SET id = 'key2' WHERE id = 'key1'");
      await waitForReplica(orders, 'customer', 'key1', { state: 'DELETED', version: 2 });
      const key2 = await waitForReplica(orders, 'customer', 'key2', {
        state: 'ACTIVE',
        version: 1,
      });
      expect(key2.fields).toEqual({ name: 'Hal', address: 'Ayr', tier: 'gold' });
      expect(
        await count(orders.database.db, "SELECT 1 FROM orders WHERE customer_id = 'key1'"),
      ).toBe(0);
      const tomb = await customers.database.db.query(
        "SELECT id, version FROM baton.tombstones WHERE entity = 'customer' AND id IN ('key1', 'key2')",
      );
      expect(tomb.rows).toEqual([{ id: 'key1', version: '2' }]);
    });

    it('an update that changes no copied field emits nothing', async () => {
      await addCustomer('noop1', 'Ivy', 'Kew');
      const before = await events();
      await customers.database.db.query("UPDATE customers SET secret = 's' WHERE id = 'noop1'");
      await customers.database.db.query("UPDATE customers SET name = 'Ivy' WHERE id = 'noop1'");
      await customers.database.db.query('UPDATE customers SET tier = tier');
      expect(await events()).toBe(before);
      await customers.database.db.query("UPDATE customers SET name = 'Ivo' WHERE id = 'noop1'");
      expect(await events()).toBe(before + 1);
    });

    it('re-creating a deleted id gives a higher version; the replica turns ACTIVE again and the tombstone goes', async () => {
      await addCustomer('re1', 'Jo', 'Rye');
      await customers.database.db.query("DELETE FROM customers WHERE id = 're1'");
      await waitForReplica(invoices, 'customer', 're1', { state: 'DELETED', version: 2 });
      await addCustomer('re1', 'Jo', 'Hove');
      const again = await waitForReplica(invoices, 'customer', 're1', {
        state: 'ACTIVE',
        version: 3,
      });
      expect(again.fields).toMatchObject({ address: 'Hove' });
      expect(
        await count(customers.database.db, "SELECT 1 FROM baton.tombstones WHERE id = 're1'"),
      ).toBe(0);
      // and it can be referenced again
      await refer(invoices, 're1', 'INSERT INTO invoices (customer_id, amount) VALUES ($1, 1)', [
        're1',
      ]);
    });

    it('multi-row INSERT and DELETE statements emit one event per row', async () => {
      const before = await events();
      await customers.database.db.query(
        "INSERT INTO customers (id, name, tier) SELECT 'mr' || g, 'n' || g, 'gold' FROM generate_series(1, 7) g",
      );
      expect(await events()).toBe(before + 7);
      await customers.database.db.query("DELETE FROM customers WHERE id LIKE 'mr%'");
      expect(await events()).toBe(before + 14);
      expect(
        await count(customers.database.db, "SELECT 1 FROM baton.tombstones WHERE id LIKE 'mr%'"),
      ).toBe(7);
      for (let g = 1; g <= 7; g++)
        await waitForReplica(tickets, 'customer', `mr${g}`, { state: 'DELETED', version: 2 });
    });

    it('TRUNCATE of an entity table is refused (it would skip the tombstones)', async () => {
      const error = await customers.database.db
        .query('TRUNCATE customers')
        .catch((e: unknown) => e as Error & { code?: string });
      expect(error).toMatchObject({ code: 'BR003' });
      expect((error as Error).message).toMatch(/TRUNCATE.*customer.*DELETE/);
      expect(await count(customers.database.db, 'SELECT 1 FROM customers')).toBeGreaterThan(0);
    });
  });

  it('ends consistent: every replica equals its owner for every id', async () => {
    await expectConsistent(customers, orders, 'customer');
    await expectConsistent(customers, tickets, 'customer');
    await expectConsistent(customers, invoices, 'customer');
    await expectConsistent(customers, reviews, 'customer', { anonymised: true });
    await expectConsistent(orders, shipments, 'order');
    expect(await replicaRow(orders, 'customer', 'nobody')).toBeUndefined();
  });
});
