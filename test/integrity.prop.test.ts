import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { SEALED_TABLES, type SealedTable } from '../src/caretaker/sealed-tables.ts';
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
  | { table: 'subscriptions' }
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

/** What a tamper did, for the model: the row's label and whether it can be restored. */
interface Done {
  table: string;
  label: string;
  recoverable: boolean;
}

const sealedByName = new Map(SEALED_TABLES.map((t) => [t.table, t]));

async function label(s: TestService, sealed: SealedTable, where: string, values: unknown[]) {
  const r = await s.database.db.query<{ label: string }>(
    `SELECT ${sealed.keySql} AS label FROM baton.${sealed.table} r WHERE ${where}`,
    values,
  );
  return r.rows[0]?.label as string;
}

/** Applies one tamper with the triggers off; returns what it changed (undefined: nothing). */
async function apply(s: TestService, t: Tamper): Promise<Done | undefined> {
  const db = s.database.db;
  const quietly = (sql: string, values: unknown[]) =>
    db.transaction(async (tx) => {
      await tx.query('SET LOCAL session_replication_role = replica');
      return tx.query(sql, values);
    });
  const nth = async (sql: string, n: number) => {
    const rows = (await db.query<{ ctid: string }>(sql)).rows;
    return rows[n % rows.length]?.ctid as string;
  };
  switch (t.table) {
    case 'outbox': {
      const ctid = await nth('SELECT ctid::text FROM baton.outbox ORDER BY id', t.pick);
      const value = t.column === 'payload' ? `'{"forged": true}'::jsonb` : `'forged.type'`;
      const r = await quietly(
        `UPDATE baton.outbox SET ${t.column} = ${value} WHERE ctid = $1::tid RETURNING ctid::text`,
        [ctid],
      );
      return {
        table: 'outbox',
        label: await label(s, sealedByName.get('outbox')!, 'r.ctid = $1::tid', [r.rows[0]?.ctid]),
        recoverable: false,
      };
    }
    case 'stream_versions':
    case 'version_gates': {
      const ctid = await nth(`SELECT ctid::text FROM baton.${t.table} ORDER BY 1`, t.pick);
      const r = await quietly(
        `UPDATE baton.${t.table} SET version = version + $2 WHERE ctid = $1::tid AND version + $2 > 0 RETURNING ctid::text`,
        [ctid, t.by],
      );
      if (r.rowCount === 0) return undefined;
      return {
        table: t.table,
        label: await label(s, sealedByName.get(t.table)!, 'r.ctid = $1::tid', [r.rows[0]?.ctid]),
        // A counter is set right from the versions its key issued; a gate cannot be known.
        recoverable: t.table === 'stream_versions',
      };
    }
    case 'barrier': {
      const ctid = await nth('SELECT ctid::text FROM baton.barrier ORDER BY tx_id, op', t.pick);
      const change =
        t.column === 'result'
          ? `result = '{"forged": true}'`
          : t.column === 'outcome'
            ? `outcome = CASE outcome WHEN 'done' THEN 'null' ELSE 'done' END`
            : `op = CASE op WHEN 'confirm' THEN 'cancel' WHEN 'cancel' THEN 'confirm' ELSE op END`;
      const r = await quietly(
        `UPDATE baton.barrier SET ${change} WHERE ctid = $1::tid
         AND NOT (${t.column === 'op'} AND op = 'try') RETURNING ctid::text`,
        [ctid],
      ).catch(() => undefined); // op changed into one the branch has: refused by the key
      if (!r?.rowCount) return undefined;
      return {
        table: 'barrier',
        label: await label(s, sealedByName.get('barrier')!, 'r.ctid = $1::tid', [r.rows[0]?.ctid]),
        recoverable: t.column !== 'result',
      };
    }
    case 'idempotency_keys': {
      const ctid = await nth('SELECT ctid::text FROM baton.idempotency_keys ORDER BY key', t.pick);
      const change =
        t.column === 'result'
          ? `result = '{"forged": true}'`
          : `state = CASE state WHEN 'done' THEN 'undone' ELSE 'done' END`;
      const r = await quietly(
        `UPDATE baton.idempotency_keys SET ${change} WHERE ctid = $1::tid RETURNING ctid::text`,
        [ctid],
      );
      return {
        table: 'idempotency_keys',
        label: await label(s, sealedByName.get('idempotency_keys')!, 'r.ctid = $1::tid', [
          r.rows[0]?.ctid,
        ]),
        recoverable: t.column === 'state',
      };
    }
    case 'versions_customer': {
      const ctid = await nth('SELECT ctid::text FROM baton.versions_customer ORDER BY id', t.pick);
      const r = await quietly(
        `UPDATE baton.versions_customer SET version = version + $2 WHERE ctid = $1::tid AND version + $2 > 0
         RETURNING id`,
        [ctid, t.by],
      );
      if (r.rowCount === 0) return undefined;
      return {
        table: '"baton"."versions_customer"',
        label: `customer ${r.rows[0]?.id}`,
        recoverable: true,
      };
    }
    case 'inbox': {
      const ctid = await nth('SELECT ctid::text FROM baton.inbox ORDER BY id', t.pick);
      const change =
        t.column === 'payload'
          ? `payload = '{"forged": true}'`
          : `status = CASE status WHEN 'handled' THEN 'pending' ELSE 'handled' END`;
      const r = await quietly(
        `UPDATE baton.inbox SET ${change} WHERE ctid = $1::tid RETURNING ctid::text`,
        [ctid],
      );
      return {
        table: 'inbox',
        label: await label(s, sealedByName.get('inbox')!, 'r.ctid = $1::tid', [r.rows[0]?.ctid]),
        recoverable: t.column === 'status',
      };
    }
    case 'subscriptions': {
      const r = await quietly(
        `UPDATE baton.subscriptions SET cursor = (coalesce(cursor, '0')::bigint + 1000)::text RETURNING ctid::text`,
        [],
      );
      return {
        table: 'subscriptions',
        label: await label(s, sealedByName.get('subscriptions')!, 'r.ctid = $1::tid', [
          r.rows[0]?.ctid,
        ]),
        recoverable: false,
      };
    }
    case 'relay_state': {
      const r = await quietly(
        'UPDATE baton.relay_state SET last_seq = last_seq - 1 WHERE last_seq > 0 RETURNING 1',
        [],
      );
      return r.rowCount
        ? { table: 'relay_state', label: 'last position', recoverable: true }
        : undefined;
    }
  }
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
        const done = new Map<string, Done>();
        for (const t of tampers) {
          const d = await apply(service, t);
          if (d) done.set(`${d.table}: ${d.label}`, d);
        }
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
        const unrecoverable = [...done.values()].filter((d) => !d.recoverable);
        expect(after, JSON.stringify(tampers)).toEqual(
          new Set(unrecoverable.map((d) => `${d.table}: ${d.label}`)),
        );
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
