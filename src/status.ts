import { BatonError } from './core/errors.ts';
import type { Executor } from './db/executor.ts';
import { loadMigrations } from './db/migrate.ts';
import { schemaIdent } from './db/sql.ts';
import { readSubscriptions, type SubscriptionStatus } from './messaging/subscription-status.ts';
import { SAGA_STATES, type SagaState } from './sagas/saga-states.ts';

/**
 * A point-in-time picture of one service's Baton tables, for operators
 * (`baton status`) and health checks. Read-only; each figure is read by one
 * statement, so figures taken a moment apart may disagree slightly.
 */
export interface BatonStatus {
  schema: string;
  migrations: {
    /** Highest migration applied to this database. */
    applied: number;
    /** Highest migration this version of Baton ships. */
    latest: number;
  };
  outbox: {
    /** Committed events the relay has not sequenced yet (`seq IS NULL`). */
    backlog: number;
    /**
     * Age in seconds of the oldest unsequenced event, by its `occurredAt`
     * (0 when the backlog is empty). A growing lag means no relay is running
     * or it is failing.
     */
    relayLagSeconds: number;
    /** The last feed position handed out. */
    lastSequenced: number;
    /** Events at or below this position were pruned from the outbox. */
    prunedThrough: number;
  };
  subscriptions: SubscriptionStatus[];
  /** Dead letters over all subscriptions. */
  deadLetters: number;
  /** Cross-service references: deletes, quarantine, policy actions, the caretaker's last run. */
  references: ReferencesStatus;
  /** Sagas orchestrated by this service: counts by state, stuck ones, the oldest unfinished. */
  sagas: SagasStatus;
}

export interface SagasStatus {
  /** False when the saga tables are not in this database (migration 3 not applied): everything below is empty. */
  installed: boolean;
  /** Sagas by state (every state present, 0 when none). */
  counts: Record<SagaState, number>;
  /** Sagas waiting for an operator (`baton sagas retry|abort`), oldest first. */
  stuck: { total: number; items: StuckSaga[] };
  /** The oldest saga still running, completing or compensating, or null. */
  oldestActive: ActiveSaga | null;
}

export interface StuckSaga {
  id: string;
  name: string;
  key: string | null;
  /** The phase `baton sagas retry` resumes. */
  stuckFrom: 'completing' | 'compensating' | null;
  error: string | null;
  createdAt: string;
  /** When it became stuck. */
  stuckAt: string;
}

export interface ActiveSaga {
  id: string;
  name: string;
  state: SagaState;
  createdAt: string;
  ageSeconds: number;
  waitingFor: string | null;
}

/** Lists in the status are cut to this many entries (oldest first); totals count all. */
export const STATUS_LIST_LIMIT = 100;

export interface ReferencesStatus {
  /** False when the references tables are not in this database (migration 2 not applied): everything below is empty. */
  installed: boolean;
  /** Owner side: coordinated (restrict) deletes still waiting for referrers' votes. */
  pendingDeletes: { total: number; items: PendingDelete[] };
  /** Referrer side: replica rows the owner has never heard of, waiting for a second confirmation or approval. */
  quarantine: { total: number; items: QuarantinedOrphan[] };
  /** Referrer side: on-delete policy actions taken; apologies are the ones on references that slipped through. */
  policyActions: { total: number; apologies: number; rowsAffected: number };
  /** The caretaker's most recent run (`baton reconcile` or the in-process schedule), or null. */
  lastReconcile: LastReconcile | null;
}

export interface PendingDelete {
  entity: string;
  id: string;
  /** The fence's version: votes for other versions do not count. */
  version: number;
  requestedAt: string;
  /** Restrict referrers that have not voted on this version yet (a referrer that is down stays here). */
  waitingFor: string[];
  /** Referrers that voted on this version (prepared: a veto would have refused the delete). */
  voted: string[];
}

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
  /** Entities whose check failed (see the run's report). */
  failedEntities: number;
}

export type { SubscriptionStatus };

/** Baton's tables are not in this database (or not in this schema). */
export class SchemaNotInstalledError extends BatonError {
  constructor(readonly schema: string) {
    super(
      'BATON_SCHEMA_NOT_INSTALLED',
      `Baton's schema "${schema}" is not installed in this database: run \`baton migrate\` (with the same database URL and --schema), or point at the database where Baton is installed.`,
    );
  }
}

/**
 * Reads the status of Baton in `schema`. Throws `SchemaNotInstalledError`
 * if Baton was never migrated there.
 */
export async function readStatus(
  db: Executor,
  options: { schema?: string } = {},
): Promise<BatonStatus> {
  const schema = options.schema ?? 'baton';
  const s = schemaIdent(schema);
  const applied = await lastAppliedMigration(db, schema);
  if (applied === undefined) throw new SchemaNotInstalledError(schema);
  const latest = (await loadMigrations(schema)).at(-1)?.id ?? 0;
  const outbox = await db.query<OutboxRow>(
    `SELECT
       (SELECT count(*) FROM ${s}.outbox WHERE seq IS NULL) AS backlog,
       (SELECT coalesce(greatest(extract(epoch FROM now() - min(occurred_at)), 0), 0)::float8
          FROM ${s}.outbox WHERE seq IS NULL) AS lag,
       r.last_seq, r.pruned_through
     FROM ${s}.relay_state r`,
  );
  const o = outbox.rows[0];
  const subs = await readSubscriptions(db, s);
  return {
    schema,
    migrations: { applied, latest },
    outbox: {
      backlog: Number(o?.backlog ?? 0),
      relayLagSeconds: roundSeconds(o?.lag ?? 0),
      lastSequenced: Number(o?.last_seq ?? 0),
      prunedThrough: Number(o?.pruned_through ?? 0),
    },
    subscriptions: subs,
    deadLetters: subs.reduce((sum, sub) => sum + sub.deadLetters, 0),
    references: await readReferencesStatus(db, s),
    sagas: await readSagasStatus(db, s),
  };
}

/** The sagas section; empty on a database without the saga tables. */
async function readSagasStatus(db: Executor, s: string): Promise<SagasStatus> {
  const counts = Object.fromEntries(SAGA_STATES.map((state) => [state, 0])) as Record<
    SagaState,
    number
  >;
  const installed = await db.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [
    `${s}.sagas`,
  ]);
  if (!installed.rows[0]?.ok) {
    return { installed: false, counts, stuck: { total: 0, items: [] }, oldestActive: null };
  }
  const byState = await db.query<{ state: SagaState; n: string }>(
    `SELECT state, count(*) AS n FROM ${s}.sagas GROUP BY state`,
  );
  for (const row of byState.rows) counts[row.state] = Number(row.n);
  const stuck = await db.query<StuckRow>(
    `SELECT id, name, key, stuck_from, error, created_at, updated_at, count(*) OVER () AS total
       FROM ${s}.sagas WHERE state = 'stuck' ORDER BY updated_at, id LIMIT ${STATUS_LIST_LIMIT}`,
  );
  // The partial index sagas_ready covers exactly the active states.
  const oldest = await db.query<OldestRow>(
    `SELECT id, name, state, created_at, waiting_for,
         greatest(extract(epoch FROM now() - created_at), 0)::float8 AS age
       FROM ${s}.sagas WHERE state IN ('running', 'completing', 'compensating')
       ORDER BY created_at, id LIMIT 1`,
  );
  const o = oldest.rows[0];
  return {
    installed: true,
    counts,
    stuck: {
      total: Number(stuck.rows[0]?.total ?? 0),
      items: stuck.rows.map((r) => ({
        id: r.id,
        name: r.name,
        key: r.key,
        stuckFrom: r.stuck_from,
        error: r.error,
        createdAt: r.created_at.toISOString(),
        stuckAt: r.updated_at.toISOString(),
      })),
    },
    oldestActive: o
      ? {
          id: o.id,
          name: o.name,
          state: o.state,
          createdAt: o.created_at.toISOString(),
          ageSeconds: roundSeconds(o.age),
          waitingFor: o.waiting_for,
        }
      : null,
  };
}

/** The references sections; empty on a database that has only the messaging tables. */
async function readReferencesStatus(db: Executor, s: string): Promise<ReferencesStatus> {
  const installed = await db.query<{ ok: boolean }>(
    `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AS ok`,
    [`${s}.delete_fences`, `${s}.reconcile_runs`],
  );
  if (!installed.rows[0]?.ok) {
    return {
      installed: false,
      pendingDeletes: { total: 0, items: [] },
      quarantine: { total: 0, items: [] },
      policyActions: { total: 0, apologies: 0, rowsAffected: 0 },
      lastReconcile: null,
    };
  }
  const pending = await db.query<PendingDeleteRow>(
    `SELECT f.entity, f.id, f.version, f.requested_at, count(*) OVER () AS total,
         coalesce(e.restrict_referrers, '{}') AS referrers,
         coalesce(array(SELECT v.referrer FROM ${s}.delete_votes v
           WHERE v.entity = f.entity AND v.id = f.id AND v.version = f.version ORDER BY v.referrer), '{}') AS voted
       FROM ${s}.delete_fences f LEFT JOIN ${s}.entities e ON e.name = f.entity
       WHERE f.state = 'pending'
       ORDER BY f.requested_at, f.entity, f.id
       LIMIT ${STATUS_LIST_LIMIT}`,
  );
  const quarantine = await db.query<QuarantineRow>(
    `SELECT entity, id, confirmations, approved, first_seen, last_seen, count(*) OVER () AS total
       FROM ${s}.quarantine ORDER BY first_seen, entity, id LIMIT ${STATUS_LIST_LIMIT}`,
  );
  const actions = await db.query<{ total: string; apologies: string; affected: string }>(
    `SELECT count(*) AS total, count(*) FILTER (WHERE apology) AS apologies,
         coalesce(sum(affected), 0) AS affected
       FROM ${s}.policy_actions`,
  );
  const last = await db.query<LastRunRow>(
    `SELECT started_at, finished_at, repair, report->'totals' AS totals, report->'ms' AS ms,
         (SELECT count(*) FROM jsonb_array_elements(coalesce(report->'entities', '[]')) e
          WHERE e ? 'error') AS failed
       FROM ${s}.reconcile_runs ORDER BY id DESC LIMIT 1`,
  );
  const a = actions.rows[0];
  return {
    installed: true,
    pendingDeletes: {
      total: Number(pending.rows[0]?.total ?? 0),
      items: pending.rows.map(toPendingDelete),
    },
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
    policyActions: {
      total: Number(a?.total ?? 0),
      apologies: Number(a?.apologies ?? 0),
      rowsAffected: Number(a?.affected ?? 0),
    },
    lastReconcile: last.rows[0] ? toLastReconcile(last.rows[0]) : null,
  };
}

/** The highest applied migration, or undefined if Baton was never installed in `schema`. */
export async function lastAppliedMigration(
  db: Executor,
  schema: string,
): Promise<number | undefined> {
  const s = schemaIdent(schema);
  const exists = await db.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [
    `${s}.migrations`,
  ]);
  if (!exists.rows[0]?.ok) return undefined;
  const r = await db.query<{ id: number | null }>(`SELECT max(id) AS id FROM ${s}.migrations`);
  return r.rows[0]?.id ?? undefined;
}

interface StuckRow {
  id: string;
  name: string;
  key: string | null;
  stuck_from: 'completing' | 'compensating' | null;
  error: string | null;
  created_at: Date;
  updated_at: Date;
  total: string;
}

interface OldestRow {
  id: string;
  name: string;
  state: SagaState;
  created_at: Date;
  waiting_for: string | null;
  age: number;
}

interface OutboxRow {
  backlog: string;
  lag: number;
  last_seq: string;
  pruned_through: string;
}

interface PendingDeleteRow {
  entity: string;
  id: string;
  version: string;
  requested_at: Date;
  total: string;
  referrers: string[];
  voted: string[];
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
  totals: Partial<Record<string, number>> | null;
  ms: number | null;
  failed: string;
}

function toPendingDelete(row: PendingDeleteRow): PendingDelete {
  const voted = new Set(row.voted);
  return {
    entity: row.entity,
    id: row.id,
    version: Number(row.version),
    requestedAt: row.requested_at.toISOString(),
    waitingFor: row.referrers.filter((r) => !voted.has(r)),
    voted: row.voted,
  };
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
    failedEntities: Number(row.failed),
  };
}

/** Millisecond precision is enough for an age and keeps the JSON readable. */
function roundSeconds(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
