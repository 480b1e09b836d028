import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Caretaker,
  type OnDeletePolicy,
  type OwnerClient,
  type Reference,
  TransportError,
} from '../src/index.ts';
import { eventually } from './helpers.ts';
import { caughtUp, startService, type TestService } from './support/services.ts';

/*
 * References accepted while the owner could not be asked
 * (`onOwnerUnreachable: 'accept'`) are verified — by the owner's events
 * arriving late, or by the caretaker — whatever became of the id: one the
 * owner never had, one it had deleted already, one that lives, one created
 * only later. Each table holds such a reference
 * under another on-delete policy. A repairing run must not fail; an id that
 * does not live gets its policy applied and recorded as an apology; one that
 * lives is verified; a second run finds nothing.
 */

const POLICIES: OnDeletePolicy[] = ['cascade', 'set-null', 'keep', 'anonymise', 'restrict'];
const table = (p: OnDeletePolicy) => `refs_${p.replace('-', '_')}`;

let customers: TestService;
let orders: TestService;
let caretaker: Caretaker;
let ownerReachable = true;
const refs = new Map<OnDeletePolicy, Reference>();
let run = 0;

beforeAll(async () => {
  customers = await startService('customers');
  orders = await startService('orders');
  await customers.database.db.query('CREATE TABLE customers (id text PRIMARY KEY, name text)');
  customers.baton.entity({
    name: 'customer',
    table: 'customers',
    key: 'id',
    fields: ['name'],
    personal: ['name'],
  });
  await customers.baton.install();
  const real = orders.ownerClientOf(customers);
  // The owner is unreachable while references are checked (a refused connection).
  const flaky: OwnerClient = {
    ...real,
    lookup: async (entity, id) => {
      if (!ownerReachable) throw new TransportError('connect ECONNREFUSED (injected)');
      return real.lookup(entity, id);
    },
    announce: (entity, id, above) => real.announce(entity, id, above),
    watermark: () => real.watermark(),
  };
  orders.baton.replicate({
    entity: 'customer',
    owner: flaky,
    consumer: orders.consumerOf(customers),
  });
  for (const policy of POLICIES) {
    await orders.database.db.query(
      `CREATE TABLE ${table(policy)} (id serial PRIMARY KEY, customer_id text, customer_name text)`,
    );
    refs.set(
      policy,
      orders.baton.reference({
        table: table(policy),
        column: 'customer_id',
        entity: 'customer',
        onDelete: policy,
        onOwnerUnreachable: 'accept',
        ...(policy === 'keep' || policy === 'anonymise'
          ? { snapshotColumns: { name: 'customer_name' } }
          : {}),
      }),
    );
  }
  await orders.baton.install();
  await orders.startConsumers();
  caretaker = orders.baton.caretaker();
});
afterAll(async () => {
  await orders?.stop();
  await customers?.stop();
});

type Fate = 'never-existed' | 'deleted-before' | 'alive' | 'created-later';
const fate = fc.constantFrom<Fate>('never-existed', 'deleted-before', 'alive', 'created-later');

describe('references accepted while the owner was unreachable', () => {
  it('are verified by the caretaker whatever became of the id, with apologies for every policy applied', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fate, { minLength: 1, maxLength: 4 }), async (fates) => {
        run++;
        const ids = fates.map((_, i) => `u${run}-${i}`);
        // The referrer hears nothing of the owner until the references are in.
        await orders.consumerOf(customers).stop();
        for (const [i, f] of fates.entries()) {
          if (f === 'deleted-before' || f === 'alive')
            await customers.database.db.query("INSERT INTO customers VALUES ($1, 'Somebody')", [
              ids[i],
            ]);
          if (f === 'deleted-before')
            await customers.database.db.query('DELETE FROM customers WHERE id = $1', [ids[i]]);
        }
        // The owner cannot be asked: every reference is accepted unverified.
        ownerReachable = false;
        for (const id of ids) {
          for (const policy of POLICIES) {
            await orders.database.db.transaction(async (tx) => {
              await refs.get(policy)?.check(tx, id);
              await tx.query(`INSERT INTO ${table(policy)} (customer_id) VALUES ($1)`, [id]);
            });
          }
        }
        ownerReachable = true;
        await orders.consumerOf(customers).start();
        for (const [i, f] of fates.entries())
          if (f === 'created-later')
            await customers.database.db.query("INSERT INTO customers VALUES ($1, 'Late')", [
              ids[i],
            ]);
        await eventually(() => caughtUp(customers, orders), 'caught up');

        const report = await caretaker.run({ repair: true, examples: 100 });
        expect(report.entities[0]?.error, 'the entity check must not fail').toBeUndefined();
        for (const [i, f] of fates.entries()) {
          const id = ids[i] as string;
          const replica = await orders.database.db.query<{ state: string }>(
            'SELECT state FROM baton.replica_customer WHERE id = $1',
            [id],
          );
          const lives = f === 'alive' || f === 'created-later';
          expect(replica.rows[0]?.state, `${f} ${id}`).toBe(lives ? 'ACTIVE' : 'DELETED');
          const counts = Object.fromEntries(
            await Promise.all(
              POLICIES.map(async (p) => {
                const r = await orders.database.db.query<{ n: number }>(
                  `SELECT count(*)::int AS n FROM ${table(p)} WHERE customer_id = $1`,
                  [id],
                );
                return [p, r.rows[0]?.n ?? 0];
              }),
            ),
          );
          if (lives) {
            expect(counts, `${f} ${id}: every reference stays`).toEqual(
              Object.fromEntries(POLICIES.map((p) => [p, 1])),
            );
          } else {
            // cascade: gone; set-null: cleared; keep, anonymise, restrict: kept.
            expect(counts, `${f} ${id}: the policies applied`).toEqual({
              cascade: 0,
              'set-null': 0,
              keep: 1,
              anonymise: 1,
              restrict: 1,
            });
            const actions = await orders.database.db.query<{ reference: string; apology: boolean }>(
              'SELECT reference, apology FROM baton.policy_actions WHERE entity_id = $1',
              [id],
            );
            expect(
              new Set(actions.rows.map((a) => `${a.reference}:${a.apology}`)),
              `${f} ${id}: every policy recorded as an apology`,
            ).toEqual(new Set(POLICIES.map((p) => `${table(p)}.customer_id:true`)));
          }
        }
        const again = await caretaker.run({ repair: true });
        expect(again.totals.differences).toBe(0);
      }),
      { numRuns: 20 },
    );
  }, 240_000);
});
