import type { Executor } from '../db/executor.ts';

/** Lists in a status are cut to this many entries (oldest first); totals count all. */
const LIST_LIMIT = 100;

export interface QuarantinedOrphan {
  entity: string;
  id: string;
  /** Runs that saw it (repaired once it reaches 2, or when approved). */
  confirmations: number;
  approved: boolean;
  firstSeen: string;
  lastSeen: string;
}

export interface LastReconcile {
  startedAt: string;
  finishedAt: string;
  /** True for a repair run, false for a dry run. */
  repair: boolean;
  ms: number;
  /** Differences found (not counting ones that healed while checked). */
  differences: number;
  repaired: number;
  quarantined: number;
  referencingRowProblems: number;
  /** Rows of the service's own tables changed outside Baton, and holes in its feed. */
  integrityProblems: number;
  /** Entities whose check failed (see the run's report). */
  failedEntities: number;
  /** Differences by class (`lost-upsert`, `diverged`, …). */
  byClass: Record<string, number>;
  invariantViolations: number;
}

/** The caretaker's own records: suspected orphans in quarantine, and its last run. */
export interface CaretakerStatus {
  /** Referrer side: replica rows the owner has never heard of, waiting for a second confirmation or approval. */
  quarantine: { total: number; items: QuarantinedOrphan[] };
  /** The caretaker's most recent run (`baton reconcile` or the in-process schedule), or null. */
  lastReconcile: LastReconcile | null;
}

export async function readCaretakerStatus(db: Executor, s: string): Promise<CaretakerStatus> {
  const quarantine = await db.query<QuarantineRow>(
    `SELECT entity, id, confirmations, approved, first_seen, last_seen, count(*) OVER () AS total
       FROM ${s}.quarantine ORDER BY first_seen, entity, id LIMIT ${LIST_LIMIT}`,
  );
  const last = await db.query<LastRunRow>(
    `SELECT started_at, finished_at, repair, report->'totals' AS totals, report->'ms' AS ms,
         (SELECT count(*) FROM jsonb_array_elements(coalesce(report->'entities', '[]')) e
          WHERE e ? 'error') AS failed
       FROM ${s}.reconcile_runs ORDER BY id DESC LIMIT 1`,
  );
  return {
    quarantine: {
      total: Number(quarantine.rows[0]?.total ?? 0),
      items: quarantine.rows.map((q) => ({
        entity: q.entity,
        id: q.id,
        confirmations: q.confirmations,
        approved: q.approved,
        firstSeen: q.first_seen.toISOString(),
        lastSeen: q.last_seen.toISOString(),
      })),
    },
    lastReconcile: last.rows[0] ? toLastReconcile(last.rows[0]) : null,
  };
}

interface QuarantineRow {
  entity: string;
  id: string;
  confirmations: number;
  approved: boolean;
  first_seen: Date;
  last_seen: Date;
  total: string;
}

interface LastRunRow {
  started_at: Date;
  finished_at: Date;
  repair: boolean;
  totals: (Partial<Record<string, number>> & { byClass?: Record<string, number> }) | null;
  ms: number | null;
  failed: string;
}

function toLastReconcile(row: LastRunRow): LastReconcile {
  const totals = row.totals ?? {};
  return {
    startedAt: row.started_at.toISOString(),
    finishedAt: row.finished_at.toISOString(),
    repair: row.repair,
    ms: Number(row.ms ?? 0),
    differences: Number(totals.differences ?? 0),
    repaired: Number(totals.repaired ?? 0),
    quarantined: Number(totals.quarantined ?? 0),
    referencingRowProblems: Number(totals.referencingRowProblems ?? 0),
    integrityProblems: Number(totals.integrityProblems ?? 0),
    failedEntities: Number(row.failed),
    byClass: totals.byClass ?? {},
    invariantViolations: Number(totals.invariantViolations ?? 0),
  };
}
