import type { Database, Executor } from '../db/executor.ts';
import { pinnedSetLocal } from '../references/state-form.ts';
import { entityVersionsTable, SEALED_TABLES, type SealedTable } from './sealed-tables.ts';

/** What the caretaker found in one of this service's own tables. */
export interface IntegrityReport {
  /** The table (for an entity's versions table: its quoted name). */
  table: string;
  /** Rows whose seal does not match: changed, or written, outside Baton. */
  altered: number;
  /** Of those, how many were restored (or, for counters and versions, set right). */
  repaired: number;
  /** What a change means, for operators. */
  meaning: string;
  examples: { row: string; action: string }[];
}

/** The outbox's own bookkeeping: positions handed out, versions issued, and holes in them. */
export interface FeedReport {
  /** The relay's last position was behind a position it had handed out (it would fail on every pass). */
  lastPositionBehind: boolean;
  /** Positions the relay handed out whose events are gone (deleted outside Baton before every consumer read them). */
  missingPositions: number;
  /** Keys whose retained events skip a version, or stop below the key's counter: events deleted before they were relayed. */
  missingVersions: number;
  /** Keys whose counter is missing or below a version the key issued (a new event would repeat a version). */
  countersBehind: number;
  examples: string[];
  repaired: number;
}

/** An entity this service owns, for the checks of its versions table. */
export interface OwnedEntity {
  name: string;
  /** Its versions table, quoted. */
  versionsTable: string;
  /** Has the owner announce the id's state again above `above` (see EntityOwner.announce). */
  announce(id: string, above: number): Promise<unknown>;
}

const LIMIT = 1_000;

export interface IntegrityOptions {
  repair: boolean;
  /**
   * With `repair`: take what cannot be restored as it now is — an operator
   * has looked at it — and seal it again, so later runs stop reporting it.
   */
  acceptAltered?: boolean;
  examples: number;
}

/**
 * Checks the tables that decide what this service's Baton does next against
 * their seals (see sealed-tables.ts), and the feed's positions against its
 * bookkeeping; with `repair`, restores what can be known:
 *
 * - a status, state, op or outcome whose original the seal identifies among
 *   the column's few values is put back (a barrier row whose outcome was set
 *   by hand, an idempotency key marked undone, …);
 * - a version counter is set to at least every version its key has issued
 *   (the outbox's), and resealed;
 * - an entity's version is announced again above what it says;
 * - the relay's last position is moved up to the highest it handed out.
 *
 * Anything else — an event's payload, a version gate — cannot be known
 * again: it is reported, for an operator.
 */
export async function checkIntegrity(
  db: Database,
  schemaSql: string,
  entities: readonly OwnedEntity[],
  options: IntegrityOptions,
): Promise<{ tables: IntegrityReport[]; feed: FeedReport }> {
  const tables: IntegrityReport[] = [];
  for (const sealed of SEALED_TABLES) {
    tables.push(await checkTable(db, schemaSql, sealed, options, repairFor(sealed, schemaSql)));
  }
  for (const entity of entities) {
    const sealed = entityVersionsTable(entity.versionsTable, entity.name);
    tables.push(
      await checkTable(db, schemaSql, sealed, options, async (_tx, row) => {
        // (Its own transaction: the row is not locked here.)
        await entity.announce(String(row.id), Number(row.version));
        return 'announced again above the version it said';
      }),
    );
  }
  return { tables, feed: await checkFeed(db, schemaSql, options) };
}

type BrokenRow = Record<string, unknown> & { row: string; ctid: string };
type Repair = (tx: Executor, row: BrokenRow) => Promise<string | undefined>;

/**
 * Repairs that do not come from the seal's few candidates. A counter: if its
 * seal names the highest version its key issued (the outbox's), that was its
 * value; otherwise it goes to at least that version — never below one a
 * consumer may have seen — and is sealed again.
 */
function repairFor(sealed: SealedTable, s: string): Repair | undefined {
  if (sealed.table !== 'stream_versions') return undefined;
  return async (tx, row) => {
    const r = await tx.query<{ version: string; restored: boolean }>(
      `WITH issued AS (
         SELECT coalesce((SELECT max(o.version) FROM ${s}.outbox o WHERE o.key = $1), 0) AS v)
       UPDATE ${s}.stream_versions sv
       SET version = CASE WHEN sv.seal = ${s}.counter_seal(sv.stream_key, i.v) THEN i.v
                          ELSE greatest(sv.version, i.v) END,
           seal = ${s}.counter_seal(sv.stream_key, CASE WHEN sv.seal = ${s}.counter_seal(sv.stream_key, i.v)
                                                   THEN i.v ELSE greatest(sv.version, i.v) END)
       FROM issued i
       WHERE sv.stream_key = $1
       RETURNING sv.version::text AS version, sv.seal = ${s}.counter_seal(sv.stream_key, i.v) AS restored`,
      [row.stream_key],
    );
    const version = r.rows[0]?.version;
    if (!r.rows[0]?.restored) {
      await tx.query(
        `INSERT INTO ${s}.version_skips (key, from_version, to_version, reason)
         SELECT $1, coalesce((SELECT max(o.version) FROM ${s}.outbox o WHERE o.key = $1), 0) + 1, $2::bigint,
                'counter changed outside Baton, kept at the higher value'
         WHERE $2::bigint > coalesce((SELECT max(o.version) FROM ${s}.outbox o WHERE o.key = $1), 0)
         ON CONFLICT (key, from_version) DO UPDATE SET to_version = greatest(version_skips.to_version, excluded.to_version)`,
        [row.stream_key, version],
      );
    }
    return r.rows[0]?.restored
      ? `restored to v${version} (what its seal says: the key's last version)`
      : `set to v${version} (at least every version the key issued) and sealed again`;
  };
}

async function checkTable(
  db: Database,
  schemaSql: string,
  sealed: SealedTable,
  options: IntegrityOptions,
  repair: Repair | undefined,
): Promise<IntegrityReport> {
  const table = sealed.table.includes('.') ? sealed.table : `${schemaSql}.${sealed.table}`;
  const report: IntegrityReport = {
    table: sealed.table,
    altered: 0,
    repaired: 0,
    meaning: sealed.meaning,
    examples: [],
  };
  const broken = await db.transaction(async (tx) => {
    await tx.query(pinnedSetLocal());
    return tx.query<BrokenRow>(
      `SELECT r.*, r.ctid::text AS ctid, ${sealed.keySql} AS row FROM ${table} r
       WHERE r.seal IS DISTINCT FROM ${sealed.sealSql(schemaSql)} LIMIT ${LIMIT}`,
    );
  });
  report.altered = broken.rows.length;
  for (const row of broken.rows) {
    let action = 'reported: its original cannot be known';
    if (options.repair) {
      const outcome =
        (await repairOne(db, table, schemaSql, sealed, row, repair)) ??
        (options.acceptAltered ? await reseal(db, table, schemaSql, sealed, row) : undefined);
      if (outcome) action = outcome.action;
      if (outcome?.repaired) report.repaired++;
    } else if (sealed.recoverable.length > 0 || repair) {
      action = 'would restore what its seal or the outbox tells';
    }
    if (report.examples.length < options.examples) report.examples.push({ row: row.row, action });
  }
  return report;
}

/** One row's repair, in a transaction of its own; undefined when nothing could be restored. */
async function repairOne(
  db: Database,
  table: string,
  schemaSql: string,
  sealed: SealedTable,
  row: BrokenRow,
  repair: Repair | undefined,
): Promise<{ action: string; repaired: boolean } | undefined> {
  try {
    const action = await db.transaction(async (tx) => {
      await tx.query(pinnedSetLocal());
      return (
        (await restoreFromSeal(tx, table, schemaSql, sealed, row)) ?? (await repair?.(tx, row))
      );
    });
    return action === undefined ? undefined : { action, repaired: true };
  } catch (error) {
    // E.g. a barrier row whose op was changed into one its branch already has.
    return { action: `not restored: ${(error as Error).message}`, repaired: false };
  }
}

/** Seals a row as it now is (an operator accepted it). */
async function reseal(
  db: Database,
  table: string,
  schemaSql: string,
  sealed: SealedTable,
  row: BrokenRow,
): Promise<{ action: string; repaired: boolean }> {
  await db.transaction(async (tx) => {
    await tx.query(pinnedSetLocal());
    await tx.query(
      `UPDATE ${table} r SET seal = ${sealed.sealSql(schemaSql)} WHERE r.ctid = $1::tid`,
      [row.ctid],
    );
  });
  return { action: 'accepted as it is (--accept-altered) and sealed again', repaired: true };
}

/**
 * Puts back the recoverable columns of a row whose seal matches exactly one
 * combination of their candidate values; undefined when none or several do.
 */
async function restoreFromSeal(
  tx: Executor,
  table: string,
  schemaSql: string,
  sealed: SealedTable,
  row: BrokenRow,
): Promise<string | undefined> {
  if (sealed.recoverable.length === 0 || row.seal === null) return undefined;
  const combos = product(sealed.recoverable.map((c) => c.values));
  const columns = sealed.recoverable.map((c) => c.column);
  const replace = Object.fromEntries(columns.map((c, i) => [c, `c.v${i}::text`]));
  // The candidates as a VALUES list (fixed words from sealed-tables.ts, never data).
  const values = combos
    .map((combo) => `(${combo.map((v) => `'${v.replaceAll("'", "''")}'`).join(', ')})`)
    .join(', ');
  const matching = await tx.query<Record<string, string>>(
    `SELECT ${columns.map((_, i) => `c.v${i}`).join(', ')}
     FROM ${table} r, (VALUES ${values}) AS c(${columns.map((_, i) => `v${i}`).join(', ')})
     WHERE r.ctid = $1::tid AND r.seal = ${sealed.sealSql(schemaSql, replace)}
     FOR UPDATE OF r`,
    [row.ctid],
  );
  if (matching.rows.length !== 1) return undefined;
  const original = matching.rows[0] as Record<string, string>;
  await tx.query(
    `UPDATE ${table} r SET ${columns.map((c, i) => `${c} = $${i + 2}`).join(', ')} WHERE r.ctid = $1::tid`,
    [row.ctid, ...columns.map((_, i) => original[`v${i}`])],
  );
  return `restored ${columns.map((c, i) => `${c} = ${original[`v${i}`]}`).join(', ')} (what its seal says)`;
}

function product(lists: readonly (readonly string[])[]): string[][] {
  return lists.reduce<string[][]>(
    (acc, list) => acc.flatMap((prefix) => list.map((v) => [...prefix, v])),
    [[]],
  );
}

/**
 * The outbox's bookkeeping: the relay's last position must be at least the
 * highest handed out (else its next pass collides with it, and every pass
 * after); every position after the pruned ones must still hold its event (a
 * hole is an event some consumers will never read); each key's retained
 * events must run without a gap up to its counter (pruning removes a key's
 * oldest events, never one in the middle or its newest), and no counter may
 * be missing or below a version its key issued.
 */
async function checkFeed(
  db: Database,
  schemaSql: string,
  options: IntegrityOptions,
): Promise<FeedReport> {
  const s = schemaSql;
  const report: FeedReport = {
    lastPositionBehind: false,
    missingPositions: 0,
    missingVersions: 0,
    countersBehind: 0,
    examples: [],
    repaired: 0,
  };
  const note = (line: string) => {
    if (report.examples.length < options.examples) report.examples.push(line);
  };
  const r = await db.query<{ last: string; pruned: string; max: string | null; present: string }>(
    `SELECT st.last_seq::text AS last, st.pruned_through::text AS pruned,
            (SELECT max(seq)::text FROM ${s}.outbox) AS max,
            (SELECT count(*)::text FROM ${s}.outbox o WHERE o.seq > st.pruned_through AND o.seq <= st.last_seq) AS present
     FROM ${s}.relay_state st`,
  );
  const row = r.rows[0];
  if (!row) return report;
  const last = BigInt(row.last);
  const pruned = BigInt(row.pruned);
  report.lastPositionBehind = (row.max === null ? 0n : BigInt(row.max)) > last;
  report.missingPositions = Math.max(0, Number(last - pruned - BigInt(row.present)));
  if (report.missingPositions > 0) {
    const holes = await db.query<{ position: string }>(
      `SELECT g::text AS position FROM generate_series($1::bigint + 1, $2::bigint) g
       WHERE NOT EXISTS (SELECT 1 FROM ${s}.outbox o WHERE o.seq = g) LIMIT $3`,
      [row.pruned, row.last, options.examples],
    );
    for (const h of holes.rows) note(`position ${h.position}: its event is gone`);
  }
  // Per key: its retained versions, its counter, and the versions passed over on purpose.
  const keys = await db.query<{
    key: string;
    low: string;
    high: string;
    n: string;
    counter: string | null;
    skipped: string;
  }>(
    `WITH per_key AS (
       SELECT o.key, min(o.version) AS low, max(o.version) AS high, count(*) AS n,
              (SELECT sv.version FROM ${s}.stream_versions sv WHERE sv.stream_key = o.key) AS counter
       FROM ${s}.outbox o GROUP BY o.key
     ), with_skips AS (
       SELECT k.*, coalesce((SELECT sum(least(x.to_version, k.counter) - greatest(x.from_version, k.low) + 1)
                             FROM ${s}.version_skips x
                             WHERE x.key = k.key AND x.to_version >= k.low AND x.from_version <= k.counter), 0) AS skipped
       FROM per_key k)
     SELECT key, low::text, high::text, n::text, counter::text, skipped::text FROM with_skips
     WHERE counter IS NULL OR counter < high OR counter - low + 1 - skipped <> n
     LIMIT ${LIMIT}`,
  );
  for (const k of keys.rows) {
    const counter = k.counter === null ? undefined : BigInt(k.counter);
    if (counter === undefined || counter < BigInt(k.high)) {
      report.countersBehind++;
      note(`key ${k.key}: counter ${k.counter ?? 'missing'}, but v${k.high} was issued`);
      continue;
    }
    const missing = counter - BigInt(k.low) + 1n - BigInt(k.skipped) - BigInt(k.n);
    if (missing > 0n) {
      report.missingVersions++;
      note(`key ${k.key}: ${missing} version(s) between v${k.low} and v${counter} have no event`);
    }
  }
  if (options.repair && (report.lastPositionBehind || report.countersBehind > 0)) {
    await db.transaction(async (tx) => {
      if (report.lastPositionBehind) {
        await tx.query(
          `UPDATE ${s}.relay_state SET last_seq = greatest(last_seq, (SELECT max(seq) FROM ${s}.outbox))`,
        );
        report.repaired++;
      }
      const raised = await tx.query(
        `INSERT INTO ${s}.stream_versions AS sv (stream_key, version, seal)
         SELECT o.key, max(o.version), ${s}.counter_seal(o.key, max(o.version)) FROM ${s}.outbox o GROUP BY o.key
         ON CONFLICT (stream_key) DO UPDATE SET version = excluded.version, seal = excluded.seal
           WHERE sv.version < excluded.version`,
      );
      report.repaired += raised.rowCount ?? 0;
    });
  }
  return report;
}
