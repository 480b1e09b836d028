import type { Database } from '../db/executor.ts';
import { quoteIdent, quoteLiteral } from '../db/sql.ts';
import { tableSql } from '../references/definitions.ts';
import { applyDeletePolicy } from '../references/delete-policies.ts';
import type { EntityReplication } from '../references/entity-replication.ts';
import type { OwnerClient } from '../references/owner-client.ts';
import type { Reference } from '../references/reference.ts';

export interface ReferencingRowsReport {
  reference: string;
  /** Referencing values with no replica row at all (written with constraints or triggers disabled). */
  dangling: number;
  /**
   * Values pointing at a DELETED entity although its policy should have
   * reached them: cascade or set-null rows still there, keep or anonymise
   * rows without their snapshot.
   */
  policyNotApplied: number;
  /** `restrict` references to a deleted entity (the delete bypassed the protocol): reported, not repairable here. */
  restrictViolations: number;
  repaired: number;
  examples: string[];
}

/**
 * Makes the replica row of `id` and the rows referencing it agree with the
 * owner — asked with the replica row locked, before anything changes: a
 * replica that says DELETED (set so by hand, or by a bug) is never taken at
 * its word for a destructive policy.
 *
 * - the owner has it alive: the replica takes its state (announced again if
 *   the replica holds its version or above), and no policy runs;
 * - the owner deleted it, or has no record of it (then it announces the
 *   delete): the delete is applied, and its policy reaches this reference's
 *   rows — also when the replica already said DELETED at that version.
 */
async function settleReferenced(
  db: Database,
  replication: EntityReplication,
  owner: OwnerClient,
  ref: Reference,
  id: string,
): Promise<void> {
  const entity = replication.replica.entity;
  await db.transaction(async (tx) => {
    const before = await replication.replica.lock(tx, id);
    let found = await owner.lookup(entity, id);
    const held = before?.state === 'UNVERIFIED' ? -1 : (before?.version ?? -1);
    if (found.state === 'absent' || (found.state !== 'deleted' && found.version <= held)) {
      found = await owner.announce(entity, id, Math.max(held, 0));
    }
    if (found.state === 'absent') return;
    const context = {
      apology: true,
      reason: 'caretaker: referencing rows that did not match their replica',
    };
    const applied = await replication.apply(
      tx,
      { entity, id, state: found.state, fields: found.fields, personal: found.personal },
      found.version,
      context,
    );
    if (applied === 'ignored' && found.state === 'deleted') {
      // The replica already says deleted at that version (or later): run the policy it missed.
      const row = await replication.replica.lock(tx, id);
      if (row?.state === 'DELETED')
        await applyDeletePolicy(tx, replication.schemaSql, ref, { entity: row, ...context });
    }
  });
}

/**
 * Checks the referencing rows themselves against the replica — the foreign
 * key makes orphans impossible only while nobody disables it — and repairs
 * them: a dangling value is looked up at the owner (replayed if it exists,
 * otherwise its delete policy is applied); a policy that did not run is run.
 */
export async function checkReferencingRows(
  db: Database,
  replication: EntityReplication,
  owner: OwnerClient,
  options: { repair: boolean; examples: number; limit?: number },
): Promise<ReferencingRowsReport[]> {
  const reports: ReferencingRowsReport[] = [];
  const replica = replication.replica;
  for (const ref of replication.references()) {
    const col = `t.${quoteIdent(ref.def.column)}`;
    const r = await db.query<{ id: string; state: string | null; missing_snapshot: boolean }>(
      `SELECT ${col}::text AS id, r.state, bool_or(${missingSnapshotSql(ref)}) AS missing_snapshot
       FROM ${tableSql(ref.def.table)} t LEFT JOIN ${replica.tableSql} r ON r.id = ${col}
       WHERE ${col} IS NOT NULL AND (r.id IS NULL OR r.state = 'DELETED')
       GROUP BY 1, 2
       LIMIT $1`,
      [options.limit ?? 10_000],
    );
    const report: ReferencingRowsReport = {
      reference: ref.name,
      dangling: 0,
      policyNotApplied: 0,
      restrictViolations: 0,
      repaired: 0,
      examples: [],
    };
    for (const row of r.rows) {
      if (row.state === 'DELETED') {
        const policy = ref.def.onDelete;
        if (policy === 'restrict') report.restrictViolations++;
        else if (policy === 'cascade' || policy === 'set-null' || row.missing_snapshot)
          report.policyNotApplied++;
        else continue; // keep / anonymise with their snapshot: rows stay by design
      } else {
        report.dangling++;
      }
      if (report.examples.length < options.examples) report.examples.push(row.id);
      if (!options.repair || ref.def.onDelete === 'restrict') continue;
      await settleReferenced(db, replication, owner, ref, row.id);
      report.repaired++;
    }
    reports.push(report);
  }
  return reports;
}

/**
 * SQL (of row `t` and replica row `r`): a keep or anonymise row lacks a
 * snapshot column the replica's copy could fill — a field it holds that the
 * policy would copy (anonymise copies no personal field).
 */
function missingSnapshotSql(ref: Reference): string {
  if (ref.def.onDelete !== 'keep' && ref.def.onDelete !== 'anonymise') return 'false';
  const columns = Object.entries(ref.def.snapshotColumns);
  if (columns.length === 0) return 'false';
  const personalOk = (field: string) =>
    ref.def.onDelete === 'anonymise' ? ` AND NOT (${quoteLiteral(field)} = ANY(r.personal))` : '';
  return columns
    .map(
      ([field, column]) =>
        `(t.${quoteIdent(column)} IS NULL AND r.fields ->> ${quoteLiteral(field)} IS NOT NULL${personalOk(field)})`,
    )
    .join(' OR ');
}
