import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Caretaker } from '../src/index.ts';
import { eventually } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/**
 * Tampering the caretaker must find and repair: writes that bypassed the
 * triggers, events removed from an outbox before delivery, a replica edited
 * by hand (also only its fields, at an unchanged version), an owner's row
 * changed with triggers off, referencing rows written with constraints disabled. After the
 * repair pass a second pass finds nothing to do.
 */
describe('caretaker: finds every divergence, repairs it by policy, then finds nothing', () => {
  let customers: TestService;
  let orders: TestService;
  let caretaker: Caretaker;

  const owner = (sql: string, values?: unknown[]) => customers.database.db.query(sql, values);
  const referrer = (sql: string, values?: unknown[]) => orders.database.db.query(sql, values);
  /** Runs statements with triggers and foreign keys off, as a careless script or restore would. */
  const bypassing = async (db: TestService, statements: string[]) => {
    await db.database.db.transaction(async (tx) => {
      await tx.query('SET LOCAL session_replication_role = replica');
      for (const statement of statements) await tx.query(statement);
    });
  };
  const replica = async () =>
    (await referrer(`SELECT id, state, version FROM baton.replica_customer ORDER BY id`)).rows.map(
      (r) => `${r.id}:${r.state}:${r.version}`,
    );

  beforeAll(async () => {
    customers = await startService('customers');
    orders = await startService('orders');
    // Numbers a trip through JavaScript spells otherwise (1.50 → 1.5) must not count as differences.
    await owner(`CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL,
      credit numeric NOT NULL DEFAULT 1.50, prefs jsonb NOT NULL DEFAULT '{"limit": 2.0, "list": [1.10, "x"]}')`);
    customers.baton.entity({
      name: 'customer',
      table: 'customers',
      key: 'id',
      fields: ['name', 'credit', 'prefs'],
      personal: ['name'],
    });
    await customers.baton.install();
    await referrer('CREATE TABLE orders (id serial PRIMARY KEY, customer_id text, note text)');
    orders.baton.replicate({
      entity: 'customer',
      owner: orders.ownerClientOf(customers),
      consumer: orders.consumerOf(customers),
    });
    orders.baton.reference({
      table: 'orders',
      column: 'customer_id',
      entity: 'customer',
      onDelete: 'cascade',
    });
    await orders.baton.install();
    await orders.startConsumers();
    caretaker = orders.baton.caretaker();
    await owner(
      `INSERT INTO customers (id, name) SELECT 'c' || n, 'Customer ' || n FROM generate_series(1, 500) n`,
    );
    await eventually(async () => (await replica()).length === 500, '500 customers replicated');
    await referrer(
      `INSERT INTO orders (customer_id, note) SELECT 'c' || n, 'order' FROM generate_series(1, 20) n`,
    );
  });
  afterAll(async () => {
    await orders?.stop();
    await customers?.stop();
  });

  it('a consistent pair: nothing found, and only a few buckets of traffic', async () => {
    const report = await caretaker.run();
    expect(report.totals.differences).toBe(0);
    expect(report.entities[0]?.cut.caughtUp).toBe(true);
    expect(report.entities[0]?.set.bucketsDiffering).toBe(0);
  });

  it('finds each kind of tampering, repairs it by policy, and a second pass makes 0 repairs', async () => {
    // Lost upsert: a customer inserted with the capture trigger off.
    await bypassing(customers, ["INSERT INTO customers (id, name) VALUES ('c900', 'Sneaky')"]);
    // Stale fields: a customer renamed with the trigger off (its version stays).
    await bypassing(customers, ["UPDATE customers SET name = 'Quietly renamed' WHERE id = 'c7'"]);
    // True orphan: a customer deleted with the trigger off (no tombstone); it has an order (cascade).
    await bypassing(customers, ["DELETE FROM customers WHERE id = 'c2'"]);
    // Lost events: the relay is stopped, changes are made, their outbox rows removed before delivery.
    await customers.relay.stop();
    await owner("UPDATE customers SET name = 'Renamed' WHERE id = 'c3'");
    await owner("DELETE FROM customers WHERE id = 'c4'");
    await owner('DELETE FROM baton.outbox WHERE seq IS NULL');
    await customers.relay.start();
    // Replica edited by hand: a bumped version, a removed row, an invented row.
    await referrer("UPDATE baton.replica_customer SET version = version + 5 WHERE id = 'c5'");
    await referrer(
      `UPDATE baton.replica_customer SET fields = fields || '{"name": "Forged"}' WHERE id = 'c6'`,
    );
    await bypassing(orders, [
      "DELETE FROM baton.replica_customer WHERE id = 'c400'",
      "INSERT INTO baton.replica_customer (id, state, version, fields) VALUES ('c777', 'ACTIVE', 1, '{}')",
      // Referencing rows written with constraints off: to nobody, and to a customer the replica lacks.
      "INSERT INTO orders (customer_id, note) VALUES ('nobody', 'dangling')",
    ]);

    const dry = await caretaker.run();
    const classes = Object.fromEntries(dry.entities[0]!.examples.map((f) => [f.id, f.class]));
    expect(classes).toMatchObject({
      c900: 'lost-upsert',
      c2: 'true-orphan',
      c3: 'stale-replica',
      c4: 'lost-delete',
      // At the owner's version or above it, with other content: the owner announces its state again.
      c5: 'diverged',
      c6: 'diverged',
      c7: 'diverged',
      c400: 'lost-upsert',
      c777: 'true-orphan',
    });
    expect(dry.totals.repaired).toBe(0);
    expect(dry.entities[0]!.referencingRows[0]).toMatchObject({ dangling: 1 });
    expect(await replica()).toContain('c5:ACTIVE:6'); // the dry run changed nothing

    const repaired = await caretaker.run({ repair: true, approve: true });
    expect(repaired.totals.differences).toBe(9);
    expect(repaired.totals.repaired).toBe(10); // 9 differences + 1 dangling referencing row
    const rows = await replica();
    // Never announced (written with the trigger off): the owner announced it now.
    expect(rows).toContain('c900:ACTIVE:1');
    expect(rows).toContain('c2:DELETED:2');
    expect(rows).toContain('c4:DELETED:2');
    // A repair never moves a replica back: the owner announced above the forged version 6.
    expect(rows).toContain('c5:ACTIVE:7');
    expect(rows).toContain('c400:ACTIVE:1');
    expect(rows).toContain('c777:DELETED:2');
    const name = await referrer(
      "SELECT fields->>'name' AS name FROM baton.replica_customer WHERE id = 'c3'",
    );
    expect(name.rows[0]?.name).toBe('Renamed');
    const names = await referrer(
      "SELECT id, fields->>'name' AS name, version FROM baton.replica_customer WHERE id IN ('c6', 'c7') ORDER BY id",
    );
    expect(names.rows).toEqual([
      { id: 'c6', name: 'Customer 6', version: '2' },
      { id: 'c7', name: 'Quietly renamed', version: '2' },
    ]);
    // The owner's own records agree: tombstones for the orphans it had no record of.
    const tombstones = await owner(
      "SELECT id, version FROM baton.tombstones WHERE id IN ('c2', 'c777', 'nobody') ORDER BY id",
    );
    expect(tombstones.rows).toEqual([
      { id: 'c2', version: '2' },
      { id: 'c777', version: '2' },
      { id: 'nobody', version: '1' },
    ]);
    // Cascade applied to the orders of the deleted and orphaned customers and the dangling one.
    const left = await referrer(
      "SELECT customer_id FROM orders WHERE customer_id IN ('c2', 'c4', 'nobody')",
    );
    expect(left.rows).toEqual([]);
    const apologies = await referrer(
      'SELECT count(*)::int AS n FROM baton.policy_actions WHERE apology',
    );
    expect(apologies.rows[0]?.n).toBeGreaterThanOrEqual(3);
    const apologyEvents = await referrer(
      "SELECT count(*)::int AS n FROM baton.outbox WHERE type = 'baton.reference.apology'",
    );
    expect(apologyEvents.rows[0]?.n).toBeGreaterThanOrEqual(3);

    const again = await caretaker.run({ repair: true });
    expect(again.totals.differences).toBe(0);
    expect(again.totals.repaired).toBe(0);
    expect(again.totals.referencingRowProblems).toBe(0);
  });

  it('quarantines a true orphan and repairs it only when confirmed on a second run', async () => {
    await bypassing(customers, ["DELETE FROM customers WHERE id = 'c10'"]);
    const first = await caretaker.run({ repair: true });
    expect(first.entities[0]?.quarantined).toBe(1);
    expect(await replica()).toContain('c10:ACTIVE:1');
    const second = await caretaker.run({ repair: true });
    expect(second.entities[0]?.repaired).toBe(1);
    expect(await replica()).toContain('c10:DELETED:2');
    const third = await caretaker.run({ repair: true });
    expect(third.totals.differences).toBe(0);
  });

  it('runs invariants and their remedies', async () => {
    orders.baton.invariant({
      name: 'orders-have-notes',
      sql: "SELECT id FROM orders WHERE note = 'bad'",
      remedy: {
        publish: (row) => ({
          type: 'orders.bad-note',
          key: String(row.id),
          payload: { id: row.id },
        }),
      },
    });
    await referrer("INSERT INTO orders (customer_id, note) VALUES ('c20', 'bad')");
    const report = await caretaker.run({ repair: true });
    expect(report.invariants).toEqual([
      expect.objectContaining({ name: 'orders-have-notes', violations: 1, remedied: 1 }),
    ]);
    const published = await referrer(
      "SELECT count(*)::int AS n FROM baton.outbox WHERE type = 'orders.bad-note'",
    );
    expect(published.rows[0]?.n).toBe(1);
  });

  it('runs on a schedule in process, one run at a time, until stopped', async () => {
    const runs = async () =>
      (await referrer('SELECT count(*)::int AS n FROM baton.reconcile_runs')).rows[0]?.n as number;
    const before = await runs();
    const schedule = caretaker.schedule(50, { repair: false });
    await eventually(async () => (await runs()) >= before + 2, 'two scheduled runs');
    await schedule.stop();
    const stopped = await runs();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await runs(), 'no run after stop()').toBe(stopped);
  });
});
