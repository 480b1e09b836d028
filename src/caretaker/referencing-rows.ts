import type { Database } from '../db/executor.ts';
import { quoteIdent } from '../db/sql.ts';
import { tableSql } from '../references/definitions.ts';
import type { EntityReplication } from '../references/entity-replication.ts';
import type { OwnerClient } from '../references/owner-client.ts';

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
      const found = await owner.lookup(replica.entity, row.id);
      await db.transaction(async (tx) => {
        const current = await replica.lock(tx, row.id);
        const deleted = found.state === 'absent' || found.state === 'deleted';
        await replication.apply(
          tx,
          {
            entity: replica.entity,
            id: row.id,
            state: deleted ? 'deleted' : found.state,
            fields: found.fields,
            personal: found.personal,
          },
          Math.max(found.version, (current?.version ?? 0) + (deleted ? 1 : 0)),
          {
            apology: deleted,
            reason: 'caretaker: referencing row without a valid replica entry',
            force: true,
          },
        );
      });
      report.repaired++;
    }
    reports.push(report);
  }
  return reports;
}
