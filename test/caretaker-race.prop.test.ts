import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Caretaker, OwnerClient, Reference } from '../src/index.ts';
import { eventually } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/*
 * A repair racing the owner: the caretaker's lookup at the owner is answered
 * late — held back until the owner has changed the entity (deleted it,
 * renamed it, deleted and re-created it) and the change's event has reached
 * the referrer. Whatever the interleaving, no repair may move a replica row
 * to an older version or bring a deleted entity back, the replica ends equal
 * to the owner, and a reference to a deleted entity is refused.
 */

let customers: TestService;
let orders: TestService;
let caretaker: Caretaker;
let customerRef: Reference;
let run = 0;

/** The owner client, with lookups that can be held back after the owner answered. */
let hold: { id: string; answered: () => void; release: Promise<void> } | undefined;

const owner = (sql: string, values?: unknown[]) => customers.database.db.query(sql, values);
const referrer = (sql: string, values?: unknown[]) => orders.database.db.query(sql, values);

beforeAll(async () => {
  customers = await startService('customers');
  orders = await startService('orders');
  await owner('CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL)');
  customers.baton.entity({ name: 'customer', table: 'customers', key: 'id', fields: ['name'] });
  await customers.baton.install();
  await referrer('CREATE TABLE orders (id serial PRIMARY KEY, customer_id text)');
  const real = orders.ownerClientOf(customers);
  const delayed: OwnerClient = {
    ...real,
    lookup: async (entity, id) => {
      const answer = await real.lookup(entity, id);
      const h = hold;
      if (h && h.id === id) {
        hold = undefined;
        h.answered();
        await h.release;
      }
      return answer;
    },
    announce: (entity, id, above) => real.announce(entity, id, above),
    watermark: () => real.watermark(),
  };
  orders.baton.replicate({
    entity: 'customer',
    owner: delayed,
    consumer: orders.consumerOf(customers),
  });
  customerRef = orders.baton.reference({
    table: 'orders',
    column: 'customer_id',
    entity: 'customer',
    onDelete: 'cascade',
  });
  await orders.baton.install();
  await orders.startConsumers();
  caretaker = orders.baton.caretaker();
  await referrer(`CREATE TABLE replica_writes (id text, old_version bigint, new_version bigint,
    old_state text, new_state text)`);
  await referrer(`CREATE FUNCTION record_replica_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO replica_writes VALUES (NEW.id, OLD.version, NEW.version, OLD.state, NEW.state); RETURN NULL; END $$`);
  await referrer(`CREATE TRIGGER record AFTER UPDATE ON baton.replica_customer
    FOR EACH ROW EXECUTE FUNCTION record_replica_write()`);
});
afterAll(async () => {
  await orders?.stop();
  await customers?.stop();
});

/** Makes the id a difference the caretaker will look up. */
const tampering = fc.constantFrom(
  'fields-edited',
  'version-lowered',
  'row-removed',
  'owner-renamed-quietly',
);
/** What the owner does while the caretaker's answer about the id is held back. */
const meanwhile = fc.constantFrom('delete', 'rename', 'delete-and-recreate', 'rename-twice');

async function tamper(id: string, how: string): Promise<void> {
  const quietly = async (service: TestService, sql: string) =>
    service.database.db.transaction(async (tx) => {
      await tx.query('SET LOCAL session_replication_role = replica');
      await tx.query(sql, [id]);
    });
  if (how === 'fields-edited')
    await quietly(
      orders,
      `UPDATE baton.replica_customer SET fields = '{"name": "forged"}' WHERE id = $1`,
    );
  if (how === 'version-lowered')
    await quietly(orders, 'UPDATE baton.replica_customer SET version = version - 1 WHERE id = $1');
  if (how === 'row-removed')
    await quietly(orders, 'DELETE FROM baton.replica_customer WHERE id = $1');
  if (how === 'owner-renamed-quietly')
    await quietly(customers, "UPDATE customers SET name = 'renamed quietly' WHERE id = $1");
}

async function ownerChanges(id: string, how: string): Promise<void> {
  if (how === 'delete' || how === 'delete-and-recreate')
    await owner('DELETE FROM customers WHERE id = $1', [id]);
  if (how === 'delete-and-recreate')
    await owner("INSERT INTO customers VALUES ($1, 'back again')", [id]);
  if (how === 'rename' || how === 'rename-twice')
    await owner("UPDATE customers SET name = 'renamed' WHERE id = $1", [id]);
  if (how === 'rename-twice')
    await owner("UPDATE customers SET name = 'renamed again' WHERE id = $1", [id]);
}

async function replicaOf(id: string) {
  const r = await referrer(
    'SELECT state, version::int AS version, fields FROM baton.replica_customer WHERE id = $1',
    [id],
  );
  return r.rows[0] as { state: string; version: number; fields: { name?: string } } | undefined;
}

async function ownerOf(id: string) {
  const live = await owner('SELECT name FROM customers WHERE id = $1', [id]);
  const latest = await owner(
    "SELECT max(version)::int AS version FROM baton.outbox WHERE key = 'customer:' || $1",
    [id],
  );
  return {
    state: live.rows[0] ? 'ACTIVE' : 'DELETED',
    name: live.rows[0]?.name as string | undefined,
    version: latest.rows[0]?.version as number,
  };
}

describe('a repair racing the owner', () => {
  it('never moves a replica back, never revives a deleted entity, and ends equal to the owner', async () => {
    await fc.assert(
      fc.asyncProperty(tampering, meanwhile, async (how, change) => {
        run++;
        const id = `race${run}`;
        const log = (...a: unknown[]) =>
          process.env.RACE_DEBUG && console.log(id, how, change, ...a);
        await owner("INSERT INTO customers VALUES ($1, 'original')", [id]);
        await orders.database.db.transaction(async (tx) => {
          await customerRef.check(tx, id);
          await tx.query('INSERT INTO orders (customer_id) VALUES ($1)', [id]);
        });
        // Replicated, and its event handled (check() may have put the row there first).
        await eventually(async () => {
          const handled = await referrer(
            "SELECT 1 FROM baton.inbox WHERE key = 'customer:' || $1 AND version = 1 AND status = 'handled'",
            [id],
          );
          return handled.rows.length === 1 && (await replicaOf(id))?.version === 1;
        }, `${id} replicated`);
        await tamper(id, how);
        await referrer('TRUNCATE replica_writes');
        log('before the run', JSON.stringify(await replicaOf(id)));

        let answered!: () => void;
        const heldBack = new Promise<void>((resolve) => {
          answered = resolve;
        });
        let release!: () => void;
        hold = { id, answered, release: new Promise((resolve) => (release = resolve)) };
        const repairing = caretaker.run({ repair: true, approve: true, entity: 'customer' });
        log('running');
        const first = await Promise.race([heldBack.then(() => 'held'), repairing]);
        if (first !== 'held') {
          hold = undefined;
          const writes = await referrer('SELECT * FROM replica_writes WHERE id = $1', [id]);
          throw new Error(
            `the caretaker never asked the owner about ${id}: replica ${JSON.stringify(await replicaOf(id))}, writes ${JSON.stringify(writes.rows)}, report ${JSON.stringify(first).slice(0, 300)}`,
          );
        }
        log('held');
        // The owner moves on while its answer is on the way; its events reach the referrer.
        await ownerChanges(id, change);
        const target = await ownerOf(id);
        await new Promise((resolve) => setTimeout(resolve, 300));
        release();
        log('released');
        const report = await repairing;
        log('repaired', JSON.stringify(report.entities[0]?.examples));
        expect(report.entities[0]?.error).toBeUndefined();

        await eventually(
          async () => {
            const [o, r] = [await ownerOf(id), await replicaOf(id)];
            return (
              r?.state === o.state &&
              r.version === o.version &&
              (o.state === 'DELETED' || r.fields.name === o.name)
            );
          },
          `${id}: replica equals the owner (${JSON.stringify(target)})`,
        ).catch(async (error) => {
          throw new Error(
            `${error.message}: replica ${JSON.stringify(await replicaOf(id))}, owner ${JSON.stringify(await ownerOf(id))}`,
          );
        });
        const backwards = await referrer(
          `SELECT * FROM replica_writes WHERE (new_version < old_version OR
             (old_state = 'DELETED' AND new_state <> 'DELETED' AND new_version <= old_version))
           AND old_state <> 'UNVERIFIED'`,
        );
        expect(backwards.rows, `${how} / ${change}: a repair went back in time`).toEqual([]);
        if ((await ownerOf(id)).state === 'DELETED') {
          const refused = await orders.database.db
            .transaction((tx) => customerRef.check(tx, id))
            .then(
              () => 'accepted',
              (error: Error) => error.name,
            );
          expect(refused, 'a reference to the deleted customer').toBe('ReferenceViolation');
        }
      }),
      { numRuns: Number(process.env.RACE_RUNS ?? 24), endOnFailure: true },
    );
  }, 240_000);
});
