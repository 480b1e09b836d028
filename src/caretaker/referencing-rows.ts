import type { Database } from '../db/executor.ts';
import { quoteIdent } from '../db/sql.ts';
import { tableSql } from '../references/definitions.ts';
import { applyDeletePolicy } from '../references/delete-policies.ts';
import type { EntityReplication } from '../references/entity-replication.ts';
import type { OwnerClient } from '../references/owner-client.ts';
import type { Reference } from '../references/reference.ts';

export interface ReferencingRowsReport {
  reference: string;
  /** Referencing values with no replica row at all (written with constraints or triggers disabled). */
  dangling: number;
  /** Values pointing at a DELETED entity although the policy (cascade, set-null) should have removed them. */
  policyNotApplied: number;
  /** `restrict` references to a deleted entity (the delete bypassed the protocol): reported, not repairable here. */
  restrictViolations: number;
  repaired: number;
  examples: string[];
}

/** A referencing value with no replica row: the owner's state of it, or — if it has none — its announced delete. */
async function settleDangling(
  db: Database,
  replication: EntityReplication,
  owner: OwnerClient,
  id: string,
): Promise<void> {
  const entity = replication.replica.entity;
  await db.transaction(async (tx) => {
    await replication.replica.lock(tx, id);
    let found = await owner.lookup(entity, id);
    if (found.state === 'absent') found = await owner.announce(entity, id, 0);
    if (found.state === 'absent') return;
    await replication.apply(
      tx,
      { entity, id, state: found.state, fields: found.fields, personal: found.personal },
      found.version,
      { apology: true, reason: 'caretaker: referencing row without a replica entry' },
    );
  });
}

/** A cascade or set-null that did not reach a row pointing at a deleted entity: applied now. */
async function reapplyPolicy(
  db: Database,
  replication: EntityReplication,
  ref: Reference,
  id: string,
): Promise<void> {
  await db.transaction(async (tx) => {
    const entity = await replication.replica.lock(tx, id);
    if (entity?.state !== 'DELETED') return;
    await applyDeletePolicy(tx, replication.schemaSql, ref, {
      entity,
      apology: true,
      reason: 'caretaker: delete policy had not reached this row',
    });
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
    const r = await db.query<{ id: string; state: string | null }>(
      `SELECT DISTINCT ${col}::text AS id, r.state
       FROM ${tableSql(ref.def.table)} t LEFT JOIN ${replica.tableSql} r ON r.id = ${col}
       WHERE ${col} IS NOT NULL AND (r.id IS NULL OR r.state = 'DELETED')
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
        if (ref.def.onDelete === 'restrict') report.restrictViolations++;
        else if (ref.def.onDelete === 'cascade' || ref.def.onDelete === 'set-null')
          report.policyNotApplied++;
        else continue; // keep / anonymise: rows stay by design
      } else {
        report.dangling++;
      }
      if (report.examples.length < options.examples) report.examples.push(row.id);
      if (!options.repair || ref.def.onDelete === 'restrict') continue;
      if (row.state === 'DELETED') await reapplyPolicy(db, replication, ref, row.id);
      else await settleDangling(db, replication, owner, row.id);
      report.repaired++;
    }
    reports.push(report);
  }
  return reports;
}
