import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  entityVersionsTable,
  SEALED_TABLES,
  type SealedTable,
} from '../src/caretaker/sealed-tables.ts';
import { type CaretakerReport, TerminalError } from '../src/index.ts';
import { eventually } from './helpers.ts';
import { caughtUp, startService, type TestService } from './support/services.ts';

/*
 * The caretaker against a generator of tampering with a service's own
 * tables — the outbox, the version counters, an entity's versions, version
 * gates, the barrier, idempotency keys, the inbox, a subscription's cursor,
 * the relay's positions — done with SQL and the triggers off. An inbox entry
 * changed outside Baton is never handled until it is restored. A model predicts which rows a dry run must report
 * (every row whose sealed content really changed, nothing else); a repair
 * restores what can be known (a barrier op or outcome, an idempotency state,
 * a counter, an entity's version, the relay's last position) and reports the
 * rest; with --accept-altered an operator takes the rest as it is, and a run
 * after that finds nothing.
 */

let service: TestService | undefined;
/** How often the subscription's handler ran, by event payload `i`. */
const handled = new Map<number, number>();
afterEach(async () => {
  await service?.stop();
  service = undefined;
});

async function setUp(): Promise<TestService> {
  const s = await startService('integrity');
  const db = s.database.db;
  await s.relay.stop();
  await db.query('CREATE TABLE customers (id text PRIMARY KEY, name text)');
  s.baton.entity({ name: 'customer', table: 'customers', key: 'id', fields: ['name'] });
  await s.baton.install();
  s.baton.participant.reservation('points', {
    try: async () => ({ held: 1 }),
    confirm: async () => {},
    cancel: async () => {},
  });
  s.baton.participant.action('refund', {
    run: async () => ({ refunded: true }),
    undo: async () => {},
  });
  for (let i = 0; i < 4; i++) {
    await db.query('INSERT INTO customers VALUES ($1, $2)', [`c${i}`, `Customer ${i}`]);
    await db.transaction((tx) =>
      s.baton.publish(tx, { type: 'thing.noted', key: `k${i}`, payload: { i } }),
    );
    await db.transaction((tx) => s.baton.acceptIfNewer(tx, 'scope', { key: `g${i}`, version: 3 }));
    const call = { txId: `saga-${i}`, branch: 'points' };
    await s.baton.participant.reserve('points', 'try', call, {});
    await s.baton.participant.reserve('points', i % 2 ? 'confirm' : 'cancel', call, {});
    await s.baton.participant.act('refund', `key-${i}`, {});
    if (i % 2) await s.baton.participant.undo('refund', `key-${i}`, {});
  }
  // Half of the events get feed positions (and reach the inbox); the rest wait for the relay.
  await s.relay.runOnce();
  handled.clear();
  s.consumerOf(s).subscribe(['thing.noted', 'baton.entity.customer'], async (event) => {
    const i = (event.payload as { i?: number }).i;
    if (i === undefined) return;
    handled.set(i, (handled.get(i) ?? 0) + 1);
    if (i === 0) throw new TerminalError('refused for the test: a dead letter');
  });
  await s.startConsumers();
  await eventually(() => caughtUp(s, s), 'the inbox caught up');
  await s.consumerOf(s).stop();
  for (let i = 0; i < 4; i++) {
    await db.query('UPDATE customers SET name = $2 WHERE id = $1', [`c${i}`, `Renamed ${i}`]);
  }
  return s;
}

type Tamper =
  | { table: 'outbox'; column: 'payload' | 'type'; pick: number }
  | { table: 'stream_versions'; by: number; pick: number }
  | { table: 'version_gates'; by: number; pick: number }
  | { table: 'barrier'; column: 'outcome' | 'op' | 'result'; pick: number }
  | { table: 'idempotency_keys'; column: 'state' | 'result'; pick: number }
  | { table: 'versions_customer'; by: number; pick: number }
  | { table: 'inbox'; column: 'status' | 'payload'; pick: number }
  | { table: 'subscriptions'; pick?: undefined }
  | { table: 'relay_state' };

const pick = fc.nat(1_000);
const delta = fc.integer({ min: -3, max: 3 }).filter((n) => n !== 0);
const tamper: fc.Arbitrary<Tamper> = fc.oneof(
  fc.record({
    table: fc.constant('outbox' as const),
    column: fc.constantFrom('payload' as const, 'type' as const),
    pick,
  }),
  fc.record({ table: fc.constant('stream_versions' as const), by: delta, pick }),
  fc.record({ table: fc.constant('version_gates' as const), by: delta, pick }),
  fc.record({
    table: fc.constant('barrier' as const),
    column: fc.constantFrom('outcome' as const, 'op' as const, 'result' as const),
    pick,
  }),
  fc.record({
    table: fc.constant('idempotency_keys' as const),
    column: fc.constantFrom('state' as const, 'result' as const),
    pick,
  }),
  fc.record({ table: fc.constant('versions_customer' as const), by: delta, pick }),
  fc.record({ table: fc.constant('relay_state' as const) }),
  fc.record({
    table: fc.constant('inbox' as const),
    column: fc.constantFrom('status' as const, 'payload' as const),
    pick,
  }),
  fc.record({ table: fc.constant('subscriptions' as const) }),
);

/** One tamper as SQL: the table, the row (by its place in an order), the change. */
interface Change {
  /** The table as it is queried, and its sealed description (for the row's label). */
  from: string;
  sealed: SealedTable;
  /** The rows in a stable order; the tamper takes the pick-th. */
  order: string;
  /** SET … (and an optional extra condition); updates nothing when the condition fails. */
  set: string;
  where?: string;
  /** Whether the caretaker can know the original value of what this changes. */
  recoverable: boolean;
}

const sealedByName = new Map(SEALED_TABLES.map((t) => [t.table, t]));
const sealedOf = (table: string) => sealedByName.get(table) as SealedTable;

function changeFor(t: Exclude<Tamper, { table: 'relay_state' }>): Change {
  const from = `baton.${t.table}`;
  switch (t.table) {
    case 'outbox':
      return {
        from,
        sealed: sealedOf('outbox'),
        order: 'id',
        set:
          t.column === 'payload' ? `payload = '{"forged": true}'::jsonb` : `type = 'forged.type'`,
        recoverable: false,
      };
    case 'stream_versions':
    case 'version_gates':
      return {
        from,
        sealed: sealedOf(t.table),
        order: '1',
        set: `version = version + ${t.by}`,
        where: `version + ${t.by} > 0`,
        // A counter is set right from the versions its key issued; a gate cannot be known.
        recoverable: t.table === 'stream_versions',
      };
    case 'versions_customer':
      return {
        from,
        sealed: entityVersionsTable('"baton"."versions_customer"', 'customer'),
        order: 'id',
        set: `version = version + ${t.by}`,
        where: `version + ${t.by} > 0`,
        recoverable: true, // announced by the owner
      };
    case 'barrier':
      return {
        from,
        sealed: sealedOf('barrier'),
        order: 'tx_id, branch, op',
        set:
          t.column === 'result'
            ? `result = '{"forged": true}'`
            : t.column === 'outcome'
              ? `outcome = CASE outcome WHEN 'done' THEN 'null' ELSE 'done' END`
              : `op = CASE op WHEN 'confirm' THEN 'cancel' WHEN 'cancel' THEN 'confirm' ELSE op END`,
        where: t.column === 'op' ? `op <> 'try'` : undefined,
        recoverable: t.column !== 'result',
      };
    case 'idempotency_keys':
      return {
        from,
        sealed: sealedOf('idempotency_keys'),
        order: 'key',
        set:
          t.column === 'result'
            ? `result = '{"forged": true}'`
            : `state = CASE state WHEN 'done' THEN 'undone' ELSE 'done' END`,
        recoverable: t.column === 'state',
      };
    case 'inbox':
      return {
        from,
        sealed: sealedOf('inbox'),
        order: 'id',
        set:
          t.column === 'payload'
            ? `payload = '{"forged": true}'`
            : `status = CASE status WHEN 'handled' THEN 'pending' ELSE 'handled' END`,
        recoverable: t.column === 'status',
      };
    case 'subscriptions':
      return {
        from,
        sealed: sealedOf('subscriptions'),
        order: 'name',
        set: `cursor = (coalesce(cursor, '0')::bigint + 1000)::text`,
        recoverable: false,
      };
  }
}

/**
 * A row the tampers touched, followed through its updates (each moves it to
 * a new ctid): its content before the first, and whether every change to it
 * could be restored. Two tampers may undo each other; the model then expects
 * nothing reported for the row.
 */
interface Touched {
  from: string;
  sealed: SealedTable;
  original: string;
  recoverable: boolean;
}

/** Applies the tampers with the triggers off; returns what the caretaker must report. */
async function applyAll(s: TestService, tampers: readonly Tamper[]) {
  const db = s.database.db;
  const touched = new Map<string, Touched>(); // by `from@ctid`
  let relayBehind = false;
  for (const t of tampers) {
    await db
      .transaction(async (tx) => {
        await tx.query('SET LOCAL session_replication_role = replica');
        if (t.table === 'relay_state') {
          const r = await tx.query(
            'UPDATE baton.relay_state SET last_seq = last_seq - 1 WHERE last_seq > 0',
          );
          relayBehind ||= (r.rowCount ?? 0) > 0;
          return;
        }
        const c = changeFor(t);
        const rows = (
          await tx.query<{ ctid: string; content: string }>(
            `SELECT ctid::text, row_to_json(r)::text AS content FROM ${c.from} r ORDER BY ${c.order}`,
          )
        ).rows;
        const row = rows[t.pick === undefined ? 0 : t.pick % rows.length];
        if (!row) return;
        const r = await tx.query<{ ctid: string }>(
          `UPDATE ${c.from} SET ${c.set} WHERE ctid = $1::tid ${c.where ? `AND ${c.where}` : ''}
         RETURNING ctid::text`,
          [row.ctid],
        );
        const moved = r.rows[0]?.ctid;
        if (!moved) return;
        const before = touched.get(`${c.from}@${row.ctid}`);
        touched.delete(`${c.from}@${row.ctid}`);
        touched.set(`${c.from}@${moved}`, {
          from: c.from,
          sealed: c.sealed,
          original: before?.original ?? row.content,
          recoverable: (before?.recoverable ?? true) && c.recoverable,
        });
      })
      .catch((error: { code?: string }) => {
        // An op changed into one its branch already has: refused by the key, nothing changed.
        if (error.code !== '23505') throw error;
      });
  }
  // What really changed: the rows whose content differs from before the first tamper.
  const expected = new Map<string, boolean>(); // `table: label` → recoverable
  for (const [at, row] of touched) {
    const ctid = at.slice(at.indexOf('@') + 1);
    const now = await db.query<{ content: string; label: string }>(
      `SELECT row_to_json(r)::text AS content, ${row.sealed.keySql} AS label
       FROM ${row.from} r WHERE ctid = $1::tid`,
      [ctid],
    );
    const current = now.rows[0] as { content: string; label: string };
    if (current.content !== row.original)
      expected.set(`${row.sealed.table}: ${current.label}`, row.recoverable);
  }
  if (relayBehind) expected.set('relay_state: last position', true);
  return expected;
}

/** Every altered row a report lists, as `table: label`. */
function altered(report: CaretakerReport): Set<string> {
  const out = new Set<string>();
  for (const t of report.integrity?.tables ?? [])
    for (const e of t.examples) out.add(`${t.table}: ${e.row}`);
  if (report.integrity?.feed.lastPositionBehind) out.add('relay_state: last position');
  return out;
}

describe("the caretaker against a generator of tampering with a service's own tables", () => {
  it('reports exactly the rows changed, restores what can be known, and is clean once the rest is accepted', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(tamper, { minLength: 1, maxLength: 5 }), async (tampers) => {
        await service?.stop();
        service = await setUp();
        const caretaker = service.baton.caretaker();
        const done = await applyAll(service, tampers);
        // A changed inbox entry is not handled, however long its consumer runs.
        const before = new Map(handled);
        await service.consumerOf(service).start();
        await new Promise((resolve) => setTimeout(resolve, 300));
        await service.consumerOf(service).stop();
        expect(handled, 'no entry ran again or for the first time after tampering').toEqual(before);
        const clean = await caretaker.run({ examples: 1_000 });
        expect(clean.integrity, 'the integrity check ran').not.toBeNull();
        const reported = altered(clean);
        for (const key of done.keys()) expect(reported, JSON.stringify(tampers)).toContain(key);
        for (const key of reported)
          expect([...done.keys()], JSON.stringify(tampers)).toContain(key);

        await caretaker.run({ repair: true, examples: 1_000 });
        const after = altered(await caretaker.run({ examples: 1_000 }));
        const unrecoverable = [...done].filter(([, recoverable]) => !recoverable);
        expect(after, JSON.stringify(tampers)).toEqual(new Set(unrecoverable.map(([key]) => key)));
        const feed = (await caretaker.run()).integrity?.feed;
        expect(feed?.countersBehind).toBe(0);
        expect(feed?.lastPositionBehind).toBe(false);

        await caretaker.run({ repair: true, acceptAltered: true });
        const last = await caretaker.run();
        expect(last.totals.integrityProblems, JSON.stringify(last.integrity)).toBe(0);
      }),
      { numRuns: 15 },
    );
  }, 240_000);
});
