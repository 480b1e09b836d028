import type { Executor } from '../db/executor.ts';
import { SAGA_STATES, type SagaState } from './saga-states.ts';

/** Lists in a status are cut to this many entries (oldest first); totals count all. */
const LIST_LIMIT = 100;

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

/** The sagas section; empty on a database without the saga tables. */
export async function readSagasStatus(db: Executor, s: string): Promise<SagasStatus> {
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
  // One index-only count per state (sagas_by_state), not a scan of every saga ever run.
  const byState = await db.query<{ state: SagaState; n: string }>(
    `SELECT state, (SELECT count(*) FROM ${s}.sagas g WHERE g.state = x.state) AS n
       FROM unnest($1::text[]) AS x(state)`,
    [SAGA_STATES],
  );
  for (const row of byState.rows) counts[row.state] = Number(row.n);
  const stuck = await db.query<StuckRow>(
    `SELECT id, name, key, stuck_from, error, created_at, updated_at, count(*) OVER () AS total
       FROM ${s}.sagas WHERE state = 'stuck' ORDER BY updated_at, id LIMIT ${LIST_LIMIT}`,
  );
  // The partial index sagas_active holds exactly the active states, oldest first.
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

/** Millisecond precision is enough for an age and keeps the JSON readable. */
function roundSeconds(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
