import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReferenceViolation } from '../src/index.ts';
import type { EntityOwner } from '../src/references/entity-owner.ts';
import type { Reference } from '../src/references/reference.ts';
import { eventually } from './helpers.ts';
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
 * The restrict protocol between two services: customers (owner, restrict
 * referrer `orders`, receives votes on its consumer of the orders feed) and
 * orders (replica, restrict reference, votes through its own outbox).
 */
describe('restrict: fence → drain → finalise', () => {
  let customers: TestService;
  let orders: TestService;
  let owner: EntityOwner;
  let ref: Reference;

  beforeAll(async () => {
    [customers, orders] = await Promise.all([startService('customers'), startService('orders')]);
    await customers.database.db.query(CUSTOMERS_DDL);
    owner = declareCustomer(customers, { restrictReferrers: ['orders'] });
    customers.baton.acceptDeleteVotes(customers.consumerOf(orders));
    await customers.baton.install();

    await orders.database.db.query(
      'CREATE TABLE orders (id serial PRIMARY KEY, customer_id text NOT NULL)',
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
      onDelete: 'restrict',
    });
    await orders.baton.install();
    await orders.startConsumers();
    await customers.startConsumers();
  });

  afterAll(async () => {
    await orders?.stop();
    await customers?.stop();
  });

  const addCustomer = async (id: string) => {
    await customers.database.db.query(
      "INSERT INTO customers (id, name, tier) VALUES ($1, 'N', 'gold')",
      [id],
    );
    await waitForReplica(orders, 'customer', id, { state: 'ACTIVE' });
  };
  const addOrder = (id: string) =>
    orders.database.db.transaction(async (tx) => {
      await ref.check(tx, id);
      await tx.query('INSERT INTO orders (customer_id) VALUES ($1)', [id]);
    });
  const ownerHas = (id: string) =>
    count(customers.database.db, 'SELECT 1 FROM customers WHERE id = $1', [id]);
  const waitForStatus = async (id: string, state: string) => {
    let last: unknown;
    await eventually(async () => {
      last = await owner.deleteStatus(id);
      return (last as { state: string }).state === state;
    }, `delete of ${id} ${state}`);
    return last;
  };

  it('(a) no references: pending → prepared vote → deleted, tombstone, replica DELETED', async () => {
    await addCustomer('a1');
    expect(await owner.requestDelete('a1')).toEqual({ state: 'pending', waitingFor: ['orders'] });
    await waitForStatus('a1', 'done');
    expect(await ownerHas('a1')).toBe(0);
    const tomb = await customers.database.db.query(
      "SELECT version FROM baton.tombstones WHERE entity = 'customer' AND id = 'a1'",
    );
    expect(tomb.rows).toEqual([{ version: '3' }]); // 1 created, 2 deleting, 3 deleted
    await waitForReplica(orders, 'customer', 'a1', { state: 'DELETED', version: 3 });
    const votes = await customers.database.db.query(
      "SELECT version, referrer, vote, reference_count FROM baton.delete_votes WHERE id = 'a1'",
    );
    expect(votes.rows).toEqual([
      { version: '2', referrer: 'orders', vote: 'prepared', reference_count: '0' },
    ]);
    expect(await owner.requestDelete('a1')).toEqual({ state: 'done' });
    expect(await owner.requestDelete('never-existed')).toEqual({ state: 'absent' });
  });

  it('(b) references exist: vetoed; refused with a reason naming orders and the count; the entity ACTIVE again', async () => {
    await addCustomer('b1');
    await addOrder('b1');
    await addOrder('b1');
    expect(await owner.requestDelete('b1')).toMatchObject({ state: 'pending' });
    const status = await waitForStatus('b1', 'refused');
    expect(status).toEqual({
      state: 'refused',
      reason: expect.stringMatching(/orders still has 2 restrict reference\(s\) to customer b1/),
    });
    expect(await ownerHas('b1')).toBe(1);
    await waitForReplica(orders, 'customer', 'b1', { state: 'ACTIVE', version: 3 });
    expect(await count(orders.database.db, "SELECT 1 FROM orders WHERE customer_id = 'b1'")).toBe(
      2,
    );
    // Referenceable again; and once the orders are gone a new request succeeds.
    await addOrder('b1');
    await orders.database.db.query("DELETE FROM orders WHERE customer_id = 'b1'");
    expect(await owner.requestDelete('b1')).toMatchObject({ state: 'pending' });
    await waitForStatus('b1', 'done');
    await waitForReplica(orders, 'customer', 'b1', { state: 'DELETED', version: 5 });
  });

  it('(c) the referrer is down: the delete stays pending, waiting for orders, and completes after it restarts', async () => {
    await addCustomer('c1');
    await orders.consumerOf(customers).stop();
    try {
      expect(await owner.requestDelete('c1')).toEqual({ state: 'pending', waitingFor: ['orders'] });
      // The fence is out on the feed; nobody can answer for orders.
      await eventually(
        async () =>
          (await count(
            customers.database.db,
            "SELECT 1 FROM baton.outbox WHERE key = 'customer:c1' AND version = 2 AND seq IS NOT NULL",
          )) === 1,
        'deleting event relayed',
      );
      expect(await owner.deleteStatus('c1')).toEqual({ state: 'pending', waitingFor: ['orders'] });
      expect(await owner.requestDelete('c1')).toEqual({ state: 'pending', waitingFor: ['orders'] });
      expect((await owner.lookup('c1')).state).toBe('deleting');
      expect(await ownerHas('c1')).toBe(1);
    } finally {
      await orders.consumerOf(customers).start();
    }
    await waitForStatus('c1', 'done');
    await waitForReplica(orders, 'customer', 'c1', { state: 'DELETED' });
  });

  it('(d) a plain SQL DELETE of a restricted entity is refused (BR002), pointing at requestDelete', async () => {
    await addCustomer('d1');
    const error = await customers.database.db
      .query("DELETE FROM customers WHERE id = 'd1'")
      .catch((e: unknown) => e as Error & { code?: string });
    expect(error).toMatchObject({ code: 'BR002' });
    expect((error as Error).message).toMatch(
      /customer d1 has restrict references in orders.*requestDelete\(\)/,
    );
    expect(await ownerHas('d1')).toBe(1);
    // A key change is a delete of the old id, too.
    const rekey = await customers.database.db
      .query("UPDATE customers SET id = 'd2' WHERE id = 'd1'")
      .catch((e: unknown) => e as Error & { code?: string });
    expect(rekey).toMatchObject({ code: 'BR002' });
  });

  it('(e) while DELETING, check() and plain inserts refuse new references; the delete then completes', async () => {
    await addCustomer('e1');
    await customers.consumerOf(orders).stop(); // votes wait: the fence stays up
    try {
      await owner.requestDelete('e1');
      await waitForReplica(orders, 'customer', 'e1', { state: 'DELETING' });
      const viaCheck = await orders.database.db
        .transaction((tx) => ref.check(tx, 'e1'))
        .catch((e: unknown) => e);
      expect(viaCheck).toBeInstanceOf(ReferenceViolation);
      expect(viaCheck).toMatchObject({ entity: 'customer', id: 'e1', state: 'deleting' });
      const viaSql = await orders.database.db
        .query("INSERT INTO orders (customer_id) VALUES ('e1')")
        .catch((e: unknown) => orders.baton.referenceError(e));
      expect(viaSql).toMatchObject({ state: 'deleting', table: 'orders', column: 'customer_id' });
      // An id the replica never saw, looked up from the owner while it is being deleted: refused too.
      await customers.database.db.query("INSERT INTO customers (id, name) VALUES ('e2', 'x')");
      await owner.requestDelete('e2');
      await orders.consumerOf(customers).stop();
      try {
        await orders.database.db.query("DELETE FROM baton.replica_customer WHERE id = 'e2'");
        const unseen = await orders.database.db
          .transaction((tx) => ref.check(tx, 'e2'))
          .catch((e: unknown) => e);
        expect(unseen).toMatchObject({ id: 'e2', state: 'deleting' });
      } finally {
        await orders.consumerOf(customers).start();
      }
    } finally {
      await customers.consumerOf(orders).start();
    }
    await waitForStatus('e1', 'done');
    await waitForStatus('e2', 'done');
    expect(
      await count(orders.database.db, "SELECT 1 FROM orders WHERE customer_id IN ('e1', 'e2')"),
    ).toBe(0);
  });

  it("(f) a vote in orders' feed naming another referrer is not counted (a service votes only for itself)", async () => {
    await addCustomer('e1');
    await orders.database.db.transaction((tx) =>
      orders.baton.publish(tx, {
        type: 'baton.delete-vote',
        key: 'vote:customer:e1',
        payload: {
          entity: 'customer',
          id: 'e1',
          version: 1,
          referrer: 'billing',
          vote: 'vetoed',
          references: 9,
        },
      }),
    );
    await eventually(
      async () =>
        (await count(
          customers.database.db,
          "SELECT 1 FROM baton.inbox WHERE type = 'baton.delete-vote' AND payload->>'referrer' = 'billing' AND status <> 'pending'",
        )) === 1,
      'the forged vote handled or dead-lettered',
    );
    expect(
      await count(
        customers.database.db,
        "SELECT 1 FROM baton.delete_votes WHERE referrer = 'billing'",
      ),
    ).toBe(0);
    expect(
      await count(
        customers.database.db,
        "SELECT 1 FROM baton.inbox WHERE payload->>'referrer' = 'billing' AND status = 'dead' AND last_error LIKE '%votes only for itself%'",
      ),
    ).toBe(1);
  });

  it('ends consistent: replica == owner for every id', async () => {
    await expectConsistent(customers, orders, 'customer');
    expect(await replicaRow(orders, 'customer', 'd1')).toMatchObject({ state: 'ACTIVE' });
  });
});
