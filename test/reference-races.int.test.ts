import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Executor } from '../src/db/executor.ts';
import { ReferenceViolation } from '../src/index.ts';
import type { EntityOwner } from '../src/references/entity-owner.ts';
import type { EntityReplication } from '../src/references/entity-replication.ts';
import type { Reference } from '../src/references/reference.ts';
import { eventually } from './helpers.ts';
import {
  CUSTOMERS_DDL,
  count,
  declareCustomer,
  expectConsistent,
  replicaRow,
  type StateEvent,
  stateEvents,
  waitForReplica,
} from './support/refs-fixtures.ts';
import { startService, type TestService } from './support/services.ts';

/**
 * Deterministic races between a reference being added and its entity being
 * deleted, and lifecycle events arriving twice or out of order. Interleavings
 * are driven, not hoped for: the referrer's consumer is stopped and state
 * events are applied by hand (`replication.apply`) or by restarting it; a
 * transaction holding a reference check open is observed blocking the apply.
 *
 * customers owns `customer` (no restrict) and `account` (restrict: orders);
 * orders has `orders.customer_id` (cascade) and `holds.account_id` (restrict).
 */
describe('reference races', () => {
  let customers: TestService;
  let orders: TestService;
  let accounts: EntityOwner;
  let customerReplication: EntityReplication;
  let accountReplication: EntityReplication;
  let orderRef: Reference;
  let holdRef: Reference;

  beforeAll(async () => {
    [customers, orders] = await Promise.all([startService('customers'), startService('orders')]);
    await customers.database.db.query(CUSTOMERS_DDL);
    await customers.database.db.query('CREATE TABLE accounts (id text PRIMARY KEY, label text)');
    declareCustomer(customers);
    accounts = customers.baton.entity({
      name: 'account',
      table: 'accounts',
      key: 'id',
      fields: ['label'],
      restrictReferrers: ['orders'],
    });
    customers.baton.acceptDeleteVotes(customers.consumerOf(orders));
    await customers.baton.install();

    await orders.database.db.query(
      'CREATE TABLE orders (id serial PRIMARY KEY, customer_id text NOT NULL)',
    );
    await orders.database.db.query(
      'CREATE TABLE holds (id serial PRIMARY KEY, account_id text NOT NULL)',
    );
    const feed = orders.consumerOf(customers);
    const owner = orders.ownerClientOf(customers);
    customerReplication = orders.baton.replicate({ entity: 'customer', owner, consumer: feed });
    accountReplication = orders.baton.replicate({ entity: 'account', owner, consumer: feed });
    orderRef = orders.baton.reference({
      table: 'orders',
      column: 'customer_id',
      entity: 'customer',
      onDelete: 'cascade',
    });
    holdRef = orders.baton.reference({
      table: 'holds',
      column: 'account_id',
      entity: 'account',
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

  const feed = () => orders.consumerOf(customers);
  const addCustomer = async (id: string) => {
    await customers.database.db.query(
      "INSERT INTO customers (id, name, tier) VALUES ($1, 'N', 'gold')",
      [id],
    );
    await waitForReplica(orders, 'customer', id, { state: 'ACTIVE' });
  };
  const insertOrder = async (tx: Executor, id: string) => {
    await orderRef.check(tx, id);
    await tx.query('INSERT INTO orders (customer_id) VALUES ($1)', [id]);
  };
  const ordersOf = (id: string) =>
    count(orders.database.db, 'SELECT 1 FROM orders WHERE customer_id = $1', [id]);
  const applyIn = (replication: EntityReplication, event: StateEvent | undefined) => {
    if (!event) throw new Error('no such state event');
    return orders.database.db.transaction((tx) =>
      replication.apply(tx, event.state, event.version, { apology: false, reason: 'test' }),
    );
  };

  /**
   * Runs `body` inside a transaction that stays open until the returned
   * `commit()` is called: a reference check whose share lock is still held.
   */
  async function openTransaction(body: (tx: Executor) => Promise<void>) {
    let commit!: () => void;
    const gate = new Promise<void>((resolve) => {
      commit = resolve;
    });
    let ready!: () => void;
    const started = new Promise<void>((resolve) => {
      ready = resolve;
    });
    const done = orders.database.db.transaction(async (tx) => {
      await body(tx);
      ready();
      await gate;
    });
    await Promise.race([started, done]);
    return {
      commit: async () => {
        commit();
        await done;
      },
    };
  }

  const waitersOnLocks = () =>
    count(
      orders.database.db,
      "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    );

  describe('a reference added while its entity is deleted', () => {
    it('(i) the reference commits first, the tombstone arrives after: the policy is applied to it', async () => {
      await addCustomer('r1');
      await feed().stop();
      try {
        await customers.database.db.query("DELETE FROM customers WHERE id = 'r1'");
        // The replica has not heard yet: the reference is accepted.
        await orders.database.db.transaction((tx) => insertOrder(tx, 'r1'));
        expect(await ordersOf('r1')).toBe(1);
      } finally {
        await feed().start();
      }
      await waitForReplica(orders, 'customer', 'r1', { state: 'DELETED' });
      expect(await ordersOf('r1')).toBe(0);
      const actions = await orders.database.db.query(
        "SELECT policy, affected FROM baton.policy_actions WHERE entity_id = 'r1'",
      );
      expect(actions.rows).toEqual([{ policy: 'cascade', affected: '1' }]);
    });

    it('(i′) the reference transaction is still open when the tombstone is applied: the apply waits for it, then cascades it', async () => {
      await addCustomer('r2');
      await feed().stop();
      try {
        await customers.database.db.query("DELETE FROM customers WHERE id = 'r2'");
        const tombstone = (await stateEvents(customers, 'customer', 'r2')).at(-1);
        expect(tombstone?.state.state).toBe('deleted');
        const open = await openTransaction((tx) => insertOrder(tx, 'r2'));
        let applied = false;
        const apply = applyIn(customerReplication, tombstone).then((r) => {
          applied = true;
          return r;
        });
        await eventually(async () => (await waitersOnLocks()) >= 1, 'tombstone apply waits');
        expect(applied).toBe(false);
        await open.commit();
        expect(await apply).toBe('applied');
        expect(await ordersOf('r2')).toBe(0);
      } finally {
        await feed().start();
      }
      await expectConsistent(customers, orders, 'customer');
    });

    it('(ii) the tombstone arrives first, the reference after: ReferenceViolation, nothing written', async () => {
      await addCustomer('r3');
      await feed().stop();
      try {
        await customers.database.db.query("DELETE FROM customers WHERE id = 'r3'");
        const tombstone = (await stateEvents(customers, 'customer', 'r3')).at(-1);
        expect(await applyIn(customerReplication, tombstone)).toBe('applied');
        const error = await orders.database.db
          .transaction((tx) => insertOrder(tx, 'r3'))
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ReferenceViolation);
        expect(error).toMatchObject({ table: 'orders', id: 'r3', state: 'deleted' });
        expect(await ordersOf('r3')).toBe(0);
      } finally {
        await feed().start();
      }
      // Never seen by the replica, deleted at the owner: the lookup answers deleted.
      await customers.database.db.query("INSERT INTO customers (id, name) VALUES ('r4', 'x')");
      await customers.database.db.query("DELETE FROM customers WHERE id = 'r4'");
      await feed().stop();
      try {
        await orders.database.db.query("DELETE FROM baton.replica_customer WHERE id = 'r4'");
        const error = await orders.database.db
          .transaction((tx) => insertOrder(tx, 'r4'))
          .catch((e: unknown) => e);
        expect(error).toMatchObject({ id: 'r4', state: 'deleted' });
      } finally {
        await feed().start();
      }
    });
  });

  it('restrict fence race: an open check() holds the DELETING apply until it commits; the new reference is counted and vetoes', async () => {
    await customers.database.db.query("INSERT INTO accounts VALUES ('acc1', 'main')");
    await waitForReplica(orders, 'account', 'acc1', { state: 'ACTIVE', version: 1 });
    await feed().stop();
    try {
      const open = await openTransaction(async (tx) => {
        await holdRef.check(tx, 'acc1');
        await tx.query("INSERT INTO holds (account_id) VALUES ('acc1')");
      });
      expect(await accounts.requestDelete('acc1')).toEqual({
        state: 'pending',
        waitingFor: ['orders'],
      });
      const fence = (await stateEvents(customers, 'account', 'acc1')).at(-1);
      expect(fence).toMatchObject({ version: 2, state: { state: 'deleting' } });
      let applied = false;
      const apply = applyIn(accountReplication, fence).then((r) => {
        applied = true;
        return r;
      });
      await eventually(async () => (await waitersOnLocks()) >= 1, 'DELETING apply waits');
      expect(applied).toBe(false);
      expect(await replicaRow(orders, 'account', 'acc1')).toMatchObject({ state: 'ACTIVE' });
      await open.commit();
      expect(await apply).toBe('applied');
      const vote = await orders.database.db.query(
        "SELECT payload FROM baton.outbox WHERE type = 'baton.delete-vote' AND key = 'account:acc1'",
      );
      expect(vote.rows).toEqual([
        {
          payload: {
            entity: 'account',
            id: 'acc1',
            version: 2,
            referrer: 'orders',
            vote: 'vetoed',
            references: 1,
          },
        },
      ]);
    } finally {
      await feed().start();
    }
    await eventually(
      async () => (await accounts.deleteStatus('acc1')).state === 'refused',
      'acc1 delete refused',
    );
    expect(await accounts.deleteStatus('acc1')).toEqual({
      state: 'refused',
      reason: 'orders still has 1 restrict reference(s) to account acc1',
    });
    await waitForReplica(orders, 'account', 'acc1', { state: 'ACTIVE', version: 3 });
    expect(await count(customers.database.db, "SELECT 1 FROM accounts WHERE id = 'acc1'")).toBe(1);
  });

  it('duplicate and reordered lifecycle events: the replica ends at the max version, the tombstone wins, the policy runs once', async () => {
    await addCustomer('ro1');
    await feed().stop();
    try {
      await customers.database.db.query("UPDATE customers SET tier = 'silver' WHERE id = 'ro1'");
      await customers.database.db.query("UPDATE customers SET tier = 'bronze' WHERE id = 'ro1'");
      await customers.database.db.query("DELETE FROM customers WHERE id = 'ro1'");
      const events = await stateEvents(customers, 'customer', 'ro1');
      expect(events.map((e) => [e.version, e.state.state])).toEqual([
        [1, 'active'],
        [2, 'active'],
        [3, 'active'],
        [4, 'deleted'],
      ]);
      const [v1, v2, v3, v4] = events;
      const apply = (e: StateEvent | undefined) => applyIn(customerReplication, e);
      expect(await apply(v3)).toBe('applied');
      expect(await apply(v2)).toBe('ignored');
      expect(await apply(v2)).toBe('ignored');
      expect(await replicaRow(orders, 'customer', 'ro1')).toMatchObject({
        state: 'ACTIVE',
        version: 3,
        fields: { tier: 'bronze' },
      });
      await orders.database.db.transaction((tx) => insertOrder(tx, 'ro1'));
      expect(await apply(v4)).toBe('applied');
      expect(await apply(v4)).toBe('ignored');
      expect(await apply(v1)).toBe('ignored'); // deleted, then an older active: the tombstone wins
      expect(await apply(v3)).toBe('ignored');
      expect(await replicaRow(orders, 'customer', 'ro1')).toMatchObject({
        state: 'DELETED',
        version: 4,
      });
      expect(await ordersOf('ro1')).toBe(0);
      // Re-created by the owner: a newer version revives it; the old tombstone replayed changes nothing.
      await customers.database.db.query(
        "INSERT INTO customers (id, name, tier) VALUES ('ro1', 'Again', 'gold')",
      );
      const v5 = (await stateEvents(customers, 'customer', 'ro1')).at(-1);
      expect(await apply(v5)).toBe('applied');
      expect(await apply(v4)).toBe('ignored');
      expect(await replicaRow(orders, 'customer', 'ro1')).toMatchObject({
        state: 'ACTIVE',
        version: 5,
      });
    } finally {
      await feed().start(); // the consumer now delivers v1..v5 again: all stale
    }
    await eventually(
      async () =>
        (await count(
          orders.database.db,
          "SELECT 1 FROM baton.inbox WHERE key = 'customer:ro1' AND status = 'handled'",
        )) === 5,
      'all five ro1 events handled by the consumer',
    );
    const actions = await orders.database.db.query(
      "SELECT policy, affected FROM baton.policy_actions WHERE entity_id = 'ro1'",
    );
    expect(actions.rows).toEqual([{ policy: 'cascade', affected: '1' }]);
    expect(await replicaRow(orders, 'customer', 'ro1')).toMatchObject({
      state: 'ACTIVE',
      version: 5,
    });
  });

  it('everything ends consistent: replica == owner for every id of both entities', async () => {
    await expectConsistent(customers, orders, 'customer');
    await expectConsistent(customers, orders, 'account');
  });
});
