import type { Executor } from '../db/executor.ts';
import { quoteIdent } from '../db/sql.ts';
import { type MissingObject, readMissingObjects } from './installed-objects.ts';

/** Lists in a status are cut to this many entries (oldest first); totals count all. */
const LIST_LIMIT = 100;

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

/** Owner and referrer sides of references: coordinated deletes waiting, policy actions taken. */
export interface ReferenceTablesStatus {
  /** Owner side: coordinated (restrict) deletes still waiting for referrers' votes. */
  pendingDeletes: { total: number; items: PendingDelete[] };
  /** Referrer side: on-delete policy actions taken; apologies are the ones on references that slipped through. */
  policyActions: { total: number; apologies: number; rowsAffected: number };
  /** Baton's foreign keys and triggers in this service's tables that are gone or disabled (a schema tool?). */
  missingObjects: MissingObject[];
}

/** Whether the references tables are in this database (migration 2). */
export async function referencesInstalled(db: Executor, s: string): Promise<boolean> {
  const r = await db.query<{ ok: boolean }>(
    'SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AS ok',
    [`${s}.delete_fences`, `${s}.reconcile_runs`],
  );
  return r.rows[0]?.ok === true;
}

export async function readReferenceTablesStatus(
  db: Executor,
  s: string,
): Promise<ReferenceTablesStatus> {
  const pending = await db.query<PendingDeleteRow>(
    `SELECT f.entity, f.id, f.version, f.requested_at, count(*) OVER () AS total,
         coalesce(e.restrict_referrers, '{}') AS referrers,
         coalesce(array(SELECT v.referrer FROM ${s}.delete_votes v
           WHERE v.entity = f.entity AND v.id = f.id AND v.version = f.version ORDER BY v.referrer), '{}') AS voted
       FROM ${s}.delete_fences f LEFT JOIN ${s}.entities e ON e.name = f.entity
       WHERE f.state = 'pending'
       ORDER BY f.requested_at, f.entity, f.id
       LIMIT ${LIST_LIMIT}`,
  );
  const actions = await db.query<{ total: string; apologies: string; affected: string }>(
    `SELECT count(*) AS total, count(*) FILTER (WHERE apology) AS apologies,
         coalesce(sum(affected), 0) AS affected
       FROM ${s}.policy_actions`,
  );
  const a = actions.rows[0];
  const missingObjects = await readMissingObjects(db, s);
  return {
    missingObjects,
    pendingDeletes: {
      total: Number(pending.rows[0]?.total ?? 0),
      items: pending.rows.map(toPendingDelete),
    },
    policyActions: {
      total: Number(a?.total ?? 0),
      apologies: Number(a?.apologies ?? 0),
      rowsAffected: Number(a?.affected ?? 0),
    },
  };
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

/** Referrer side: one replicated entity, its owner and its rows by state. */
export interface ReplicaCounts {
  entity: string;
  owner: string;
  subscription: string;
  /** Rows by state (ACTIVE, UNVERIFIED, DELETING, DELETED). */
  states: Record<string, number>;
}

export async function readReplicaCounts(db: Executor, s: string): Promise<ReplicaCounts[]> {
  const replicas = await db.query<{ entity: string; owner: string; subscription: string }>(
    `SELECT entity, owner, subscription FROM ${s}.replicas ORDER BY entity`,
  );
  const counts: ReplicaCounts[] = [];
  for (const r of replicas.rows) {
    const table = `${s}.${quoteIdent(`replica_${r.entity}`)}`;
    const byState = await db.query<{ state: string; n: string }>(
      `SELECT state, count(*) AS n FROM ${table} GROUP BY state ORDER BY state`,
    );
    counts.push({
      ...r,
      states: Object.fromEntries(byState.rows.map((x) => [x.state, Number(x.n)])),
    });
  }
  return counts;
}
