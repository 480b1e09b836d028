import type { Executor } from '../db/executor.ts';

/** Lists in a status are cut to this many entries (oldest first); totals count all. */
const LIST_LIMIT = 100;

/**
 * Entities whose check failed in a run's report. Reports are JSON written by
 * whichever Baton version ran (or by hand): anything but a list of objects
 * counts as none, rather than failing the status, the metrics or the page.
 */
const FAILED_ENTITIES = `(SELECT count(*) FROM jsonb_array_elements(
     CASE WHEN jsonb_typeof(report->'entities') = 'array' THEN report->'entities' ELSE '[]' END) e
   WHERE jsonb_typeof(e) = 'object' AND e ? 'error')`;

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
         ${FAILED_ENTITIES} AS failed
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

/** One caretaker run as the dashboard lists it. */
export interface ReconcileRunSummary {
  id: string;
  startedAt: string;
  finishedAt: string;
  repair: boolean;
  differences: number;
  repaired: number;
  quarantined: number;
  invariantViolations: number;
  integrityProblems: number;
  failedEntities: number;
}

/** Caretaker runs, newest first; paged by the last id shown. */
export async function listReconcileRuns(
  db: Executor,
  s: string,
  options: { before?: string; limit: number },
): Promise<{ runs: ReconcileRunSummary[]; total: number }> {
  const before = options.before && /^[0-9]{1,18}$/.test(options.before) ? options.before : null;
  const r = await db.query<LastRunRow & { id: string; total: string }>(
    `SELECT id::text, started_at, finished_at, repair, report->'totals' AS totals, report->'ms' AS ms,
         ${FAILED_ENTITIES} AS failed,
         (SELECT count(*) FROM ${s}.reconcile_runs) AS total
       FROM ${s}.reconcile_runs WHERE ($1::bigint IS NULL OR id < $1)
      ORDER BY id DESC LIMIT $2`,
    [before, options.limit],
  );
  return {
    total: Number(r.rows[0]?.total ?? 0),
    runs: r.rows.map((row) => {
      const last = toLastReconcile(row);
      return {
        id: row.id,
        startedAt: last.startedAt,
        finishedAt: last.finishedAt,
        repair: last.repair,
        differences: last.differences,
        repaired: last.repaired,
        quarantined: last.quarantined,
        invariantViolations: last.invariantViolations,
        integrityProblems: last.integrityProblems,
        failedEntities: last.failedEntities,
      };
    }),
  };
}

/** One run's whole report (as the caretaker stored it), or undefined. */
export async function readReconcileReport(
  db: Executor,
  s: string,
  id: string,
): Promise<{ id: string; repair: boolean; finishedAt: string; report: StoredReport } | undefined> {
  if (!/^[0-9]{1,18}$/.test(id)) return undefined;
  const r = await db.query<{
    id: string;
    repair: boolean;
    finished_at: Date;
    report: StoredReport;
  }>(`SELECT id::text, repair, finished_at, report FROM ${s}.reconcile_runs WHERE id = $1`, [id]);
  const row = r.rows[0];
  return row
    ? {
        id: row.id,
        repair: row.repair,
        finishedAt: row.finished_at.toISOString(),
        report: row.report,
      }
    : undefined;
}

/** A stored report, read defensively: it is JSON written by whichever Baton version ran. */
export interface StoredReport {
  startedAt?: string;
  ms?: number;
  entities?: {
    entity?: string;
    owner?: string;
    counts?: Record<string, number>;
    examples?: { id?: string; class?: string; action?: string }[];
    repaired?: number;
    quarantined?: number;
    error?: string;
    referencingRows?: {
      reference?: string;
      dangling?: number;
      policyNotApplied?: number;
      restrictViolations?: number;
      repaired?: number;
    }[];
  }[];
  invariants?: {
    name?: string;
    violations?: number;
    examples?: unknown[];
    remedied?: number;
    error?: string;
  }[];
  totals?: Record<string, unknown>;
}
