import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Caretaker, CaretakerReport, Reference } from '../src/index.ts';
import { eventually } from './helpers.ts';
import { caughtUp, startService, type TestService } from './support/services.ts';

/*
 * The caretaker against an adversary with SQL: a generator tampers any
 * column of a referrer's replica rows that decides behaviour (state, version,
 * fields, personal fields, the row itself) and any owner column (with the
 * triggers off: updates, deletes, inserts, a removed tombstone), over owner
 * values at the edges of their types. A model computed from the two
 * databases with plain SQL predicts which ids a dry run must report; after
 * a repairing run every replica row must equal its owner (state, fields,
 * the version of the owner's latest state event), no repair may have moved a
 * replica row to an older version, and a second dry run finds nothing.
 */

let customers: TestService;
let orders: TestService;
let caretaker: Caretaker;
let customerRef: Reference;
let run = 0;

const owner = (sql: string, values?: unknown[]) => customers.database.db.query(sql, values);
const referrer = (sql: string, values?: unknown[]) => orders.database.db.query(sql, values);
/** Statements with triggers and foreign keys off, as a careless script or restore would. */
async function bypassing(service: TestService, statements: [string, unknown[]][]): Promise<void> {
  await service.database.db.transaction(async (tx) => {
    await tx.query('SET LOCAL session_replication_role = replica');
    for (const [sql, values] of statements) await tx.query(sql, values);
  });
}

beforeAll(async () => {
  customers = await startService('customers');
  orders = await startService('orders');
  await owner(`CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL, tier integer,
    big bigint, prefs jsonb, seen timestamptz)`);
  customers.baton.entity({
    name: 'customer',
    table: 'customers',
    key: 'id',
    fields: ['name', 'tier', 'big', 'prefs', 'seen'],
    personal: ['name'],
  });
  await customers.baton.install();
  await referrer(
    'CREATE TABLE orders (id serial PRIMARY KEY, customer_id text, customer_name text)',
  );
  orders.baton.replicate({
    entity: 'customer',
    owner: orders.ownerClientOf(customers),
    consumer: orders.consumerOf(customers),
  });
  customerRef = orders.baton.reference({
    table: 'orders',
    column: 'customer_id',
    entity: 'customer',
    onDelete: 'keep',
    snapshotColumns: { name: 'customer_name' },
  });
  await orders.baton.install();
  await orders.startConsumers();
  caretaker = orders.baton.caretaker();
  // Every write of a replica row by Baton (triggers on) is recorded: a repair must never go back.
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

// ── values at the edges of their types ─────────────────────────────────
const text = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 10 }),
  fc.constantFrom('', "O'Brien", 'ß\u{1F600}', ' padded ', '\\'),
);
const tier = fc.option(fc.oneof(fc.integer(), fc.constantFrom(-2147483648, 2147483647, 0)));
const big = fc.option(
  fc
    .oneof(
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      fc.constantFrom(2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n)),
    )
    .map(String),
);
const deep = (n: number) => `${'['.repeat(n)}1${']'.repeat(n)}`;
const prefs = fc.option(
  fc.oneof(
    fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
    fc.constantFrom(
      '{"__proto__": {"admin": true}}',
      '{"constructor": 1, "prototype": 2}',
      '{"n": 1e400, "m": -1e-400}',
      '9007199254740993',
      deep(70),
      '"\\u0001"',
    ),
  ),
);
const seen = fc.option(
  fc.constantFrom('2026-12-03 10:00:00+05:30', 'infinity', '1999-12-31 23:59:59.123456+00'),
);
const ownerValues = fc.record({ name: text, tier, big, prefs, seen });
type OwnerValues = typeof ownerValues extends fc.Arbitrary<infer T> ? T : never;

// ── what an adversary does ─────────────────────────────────────────────
const tamper = fc.oneof(
  fc.record({
    on: fc.constant('replica-state' as const),
    to: fc.constantFrom('ACTIVE', 'DELETING', 'DELETED', 'UNVERIFIED'),
  }),
  fc.record({ on: fc.constant('replica-version' as const), by: fc.integer({ min: -3, max: 5 }) }),
  fc.record({ on: fc.constant('replica-fields' as const), values: ownerValues }),
  fc.record({
    on: fc.constant('replica-personal' as const),
    to: fc.constantFrom([], ['tier'], ['name', 'tier']),
  }),
  fc.record({ on: fc.constant('replica-delete' as const) }),
  fc.record({ on: fc.constant('replica-invent' as const) }),
  fc.record({ on: fc.constant('owner-update' as const), values: ownerValues }),
  fc.record({ on: fc.constant('owner-delete' as const) }),
  fc.record({ on: fc.constant('owner-insert' as const), values: ownerValues }),
  fc.record({ on: fc.constant('owner-tombstone-drop' as const) }),
);
type Tamper = typeof tamper extends fc.Arbitrary<infer T> ? T : never;

function row(values: OwnerValues): unknown[] {
  return [values.name, values.tier, values.big, values.prefs, values.seen];
}

async function apply(id: string, t: Tamper): Promise<void> {
  const r = 'baton.replica_customer';
  switch (t.on) {
    case 'replica-state':
      return bypassing(orders, [[`UPDATE ${r} SET state = $2 WHERE id = $1`, [id, t.to]]]);
    case 'replica-version':
      return bypassing(orders, [
        [`UPDATE ${r} SET version = greatest(0, version + $2) WHERE id = $1`, [id, t.by]],
      ]);
    case 'replica-fields':
      return bypassing(orders, [
        [
          `UPDATE ${r} SET fields = jsonb_build_object('name', $2::text, 'tier', $3::int,
             'big', $4::text, 'prefs', $5::text, 'seen', $6::text) WHERE id = $1`,
          [id, ...row(t.values)],
        ],
      ]);
    case 'replica-personal':
      return bypassing(orders, [[`UPDATE ${r} SET personal = $2 WHERE id = $1`, [id, t.to]]]);
    case 'replica-delete':
      return bypassing(orders, [[`DELETE FROM ${r} WHERE id = $1`, [id]]]);
    case 'replica-invent':
      return bypassing(orders, [
        [
          `INSERT INTO ${r} (id, state, version, fields) VALUES ($1, 'ACTIVE', 1, '{"name": "x"}')
           ON CONFLICT (id) DO NOTHING`,
          [`${id}-invented`],
        ],
      ]);
    case 'owner-update':
      return bypassing(customers, [
        [
          'UPDATE customers SET name = $2, tier = $3, big = $4, prefs = $5, seen = $6 WHERE id = $1',
          [id, ...row(t.values)],
        ],
      ]);
    case 'owner-delete':
      return bypassing(customers, [['DELETE FROM customers WHERE id = $1', [id]]]);
    case 'owner-insert':
      return bypassing(customers, [
        [
          `INSERT INTO customers (id, name, tier, big, prefs, seen) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (id) DO NOTHING`,
          [`${id}-sneaked`, ...row(t.values)],
        ],
      ]);
    case 'owner-tombstone-drop':
      return bypassing(customers, [['DELETE FROM baton.tombstones WHERE id = $1', [id]]]);
  }
}

// ── the model: what each side holds, read with plain SQL ───────────────
interface Truth {
  state: 'ACTIVE' | 'DELETED' | 'ABSENT';
  /** The version of the owner's latest state event of the id (0: never announced). */
  version: number;
  fields?: Record<string, unknown>;
}

async function ownerTruth(prefix: string): Promise<Map<string, Truth>> {
  const truth = new Map<string, Truth>();
  const announced = await owner(
    `SELECT substr(key, 10) AS id, max(version)::int AS version FROM baton.outbox
     WHERE type = 'baton.entity.customer' AND starts_with(key, $1) GROUP BY key`,
    [`customer:${prefix}`],
  );
  const versionOf = new Map(announced.rows.map((r) => [r.id as string, r.version as number]));
  const live = await owner(
    `SELECT id, name, tier, big::text AS big, prefs::text AS prefs,
            to_char(seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS seen, seen::text = 'infinity' AS inf
     FROM customers WHERE starts_with(id, $1)`,
    [prefix],
  );
  for (const r of live.rows) {
    const seenText = r.inf
      ? 'infinity'
      : r.seen === null
        ? null
        : `${String(r.seen).replace(/\.?0+$/, '')}+00:00`;
    truth.set(r.id as string, {
      state: 'ACTIVE',
      version: versionOf.get(r.id as string) ?? 0,
      fields: { name: r.name, tier: r.tier, big: r.big, prefs: r.prefs, seen: seenText },
    });
  }
  const tombs = await owner(
    'SELECT id, version::int AS version FROM baton.tombstones WHERE starts_with(id, $1)',
    [prefix],
  );
  for (const r of tombs.rows)
    if (!truth.has(r.id as string))
      truth.set(r.id as string, { state: 'DELETED', version: r.version as number });
  return truth;
}

interface Copy {
  state: string;
  version: number;
  fields: Record<string, unknown>;
  personal: string[];
}

async function replicaCopy(prefix: string): Promise<Map<string, Copy>> {
  const r = await referrer(
    'SELECT id, state, version::int AS version, fields, personal FROM baton.replica_customer WHERE starts_with(id, $1)',
    [prefix],
  );
  return new Map(
    r.rows.map((row) => [
      row.id as string,
      {
        state: row.state as string,
        version: row.version as number,
        fields: row.fields as Record<string, unknown>,
        personal: row.personal as string[],
      },
    ]),
  );
}

/** Whether the replica's copy is what the owner's truth says it must be. */
function agrees(truth: Truth | undefined, copy: Copy | undefined): boolean {
  // An id the owner has no record of: the replica must not hold it (not even deleted —
  // the owner then writes the tombstone it lacks).
  if (!truth || truth.state === 'ABSENT') return copy === undefined;
  if (!copy || copy.version !== truth.version) return false;
  if (truth.state === 'DELETED') return copy.state === 'DELETED';
  return (
    copy.state === 'ACTIVE' &&
    JSON.stringify(copy.personal) === JSON.stringify(['name']) &&
    JSON.stringify(sorted(copy.fields)) === JSON.stringify(sorted(truth.fields ?? {}))
  );
}

/** The ids (of `ids`, or every id either side knows) whose replica copy disagrees, with both sides. */
async function disagreements(prefix: string, ids?: readonly string[]): Promise<unknown[]> {
  const [truth, copy] = [await ownerTruth(prefix), await replicaCopy(prefix)];
  const all = ids ?? [...new Set([...truth.keys(), ...copy.keys()])];
  return all
    .filter((id) => !agrees(truth.get(id), copy.get(id)))
    .map((id) => ({ id, owner: truth.get(id), replica: copy.get(id) }));
}

function sorted(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
}

function reportedIds(report: CaretakerReport): Set<string> {
  const ids = new Set<string>();
  for (const e of report.entities) {
    expect(e.error, 'the entity check must not fail').toBeUndefined();
    for (const f of e.examples) if (f.class !== 'in-flight') ids.add(f.id);
  }
  if (process.env.TAMPER_DEBUG && ids.size > 0)
    console.log(JSON.stringify(report.entities.flatMap((e) => e.examples)).slice(0, 3000));
  return ids;
}

const scenario = fc.record({
  initial: fc.array(ownerValues, { minLength: 3, maxLength: 6 }),
  deleted: fc.integer({ min: 0, max: 2 }),
  tampering: fc.array(fc.tuple(fc.nat(), tamper), { minLength: 1, maxLength: 6 }),
});

describe('the caretaker against a generator of tampering', () => {
  it('reports exactly what differs, repairs it without moving any replica back, then finds nothing', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async ({ initial, deleted, tampering }) => {
        run++;
        const prefix = `r${run}-`;
        const started = Date.now();
        if (process.env.TAMPER_DEBUG)
          console.log(prefix, JSON.stringify({ initial, deleted, tampering }));
        const ids = initial.map((_, i) => `${prefix}${i}`);
        // The owner's rows, written the normal way; some deleted the normal way too.
        for (const [i, values] of initial.entries()) {
          await owner(
            'INSERT INTO customers (id, name, tier, big, prefs, seen) VALUES ($1, $2, $3, $4, $5, $6)',
            [ids[i], ...row(values)],
          );
          await orders.database.db.transaction(async (tx) => {
            await customerRef.check(tx, ids[i] as string);
            await tx.query('INSERT INTO orders (customer_id) VALUES ($1)', [ids[i]]);
          });
        }
        for (const id of ids.slice(0, deleted))
          await owner('DELETE FROM customers WHERE id = $1', [id]);
        await eventually(
          async () =>
            (await caughtUp(customers, orders)) && (await disagreements(prefix, ids)).length === 0,
          `${prefix}: the replica caught up before tampering`,
        ).catch(async (error) => {
          throw new Error(`${error.message}: ${JSON.stringify(await disagreements(prefix, ids))}`);
        });

        for (const [pick, t] of tampering) await apply(ids[pick % ids.length] as string, t);

        // The model: every id either side knows, and whether it differs now.
        const truth = await ownerTruth(prefix);
        const copy = await replicaCopy(prefix);
        const known = new Set([...truth.keys(), ...copy.keys()]);
        const expected = new Set([...known].filter((id) => !agrees(truth.get(id), copy.get(id))));

        const dry = await caretaker.run({ examples: 1_000, entity: 'customer' });
        expect(reportedIds(dry), JSON.stringify(tampering)).toEqual(expected);

        await referrer('TRUNCATE replica_writes');
        const repair = await caretaker.run({
          repair: true,
          approve: true,
          examples: 1_000,
          entity: 'customer',
        });
        reportedIds(repair);
        const backwards = await referrer(
          'SELECT * FROM replica_writes WHERE new_version < old_version AND old_state <> $1',
          ['UNVERIFIED'],
        );
        expect(backwards.rows, 'a repair moved a replica row back').toEqual([]);

        await eventually(
          async () => (await disagreements(prefix)).length === 0,
          `${prefix}: every replica row equals its owner after the repair`,
        ).catch(async (error) => {
          throw new Error(`${error.message}: ${JSON.stringify(await disagreements(prefix))}`);
        });
        const after = await caretaker.run({ examples: 1_000, entity: 'customer' });
        expect(reportedIds(after)).toEqual(new Set());
        if (process.env.TAMPER_DEBUG) console.log(prefix, 'done in', Date.now() - started, 'ms');
        expect(after.entities[0]?.referencingRows[0]).toMatchObject({
          dangling: 0,
          policyNotApplied: 0,
        });
        const dead = await referrer(
          "SELECT count(*)::int AS n FROM baton.inbox WHERE status = 'dead'",
        );
        expect(dead.rows[0]?.n, 'no state event became a dead letter').toBe(0);
      }),
      {
        numRuns: Number(process.env.TAMPER_RUNS ?? 30),
        endOnFailure: process.env.TAMPER_DEBUG !== undefined,
      },
    );
  }, 300_000);
});
