import type { Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';
import type { DeadLetterMode } from './inbox-states.ts';

/** What the fetch loop reads before each fetch, in one round trip. */
export interface FetchGateReading {
  /** At least `cap` inbox entries can run: fetch nothing more until the workers catch up. */
  full: boolean;
  /** The cursor stored in the database: an operator (or another process) may have moved it. */
  cursor: string | undefined;
}

/** Rows read per step of the walk over open entries (see below). */
const CHUNK = 1000;
/** Greater than any inbox id: `(key, id) > (k, MAX_ID)` skips the rest of key k. */
const MAX_ID = '9223372036854775807';

/**
 * Backpressure that counts only work that can run. An entry is blocked —
 * and does not count — when an entry before it in its key, or the entry
 * itself, is a failure waiting: a dead letter (with `block-key`), or a
 * pending entry that failed and waits for its retry. Such entries cannot
 * run until an operator or the retry clock acts; counting them let one
 * poisoned key's backlog stop every other key (the fetch loop stopped
 * fetching at `maxPendingEntries`, and nothing that could run was left to
 * bring the count down).
 *
 * The statement stays cheap, and is bounded by the cap, not by the backlog
 * behind a blocked key (which grows without bound until someone acts):
 * - First the plain count of pending entries, up to the cap (an index-only
 *   scan of `inbox_ready`). Below the cap there is room, blocked or not:
 *   the walk below never runs.
 * - At the cap, a walk over the open entries in (key, id) order on
 *   `inbox_open`, CHUNK rows per step, counting entries not behind a
 *   blocker. A step that ends inside a blocked key jumps past the rest of
 *   that key with one index descent. It stops once `cap` entries that can
 *   run are counted, or at the end: its reads are at most the cap plus one
 *   chunk per blocked key.
 * - The stored cursor rides along, so a cursor moved in the database is
 *   noticed before the next fetch at no extra round trip.
 */
export class FetchGate {
  private readonly sql: string;

  constructor(
    schemaSql: string,
    private readonly subscription: string,
    mode: DeadLetterMode,
  ) {
    const s = schemaSql;
    const open = mode === 'block-key' ? `('pending', 'dead')` : `('pending')`;
    const blocker = mode === 'block-key' ? `(status = 'dead' OR attempts > 0)` : `attempts > 0`;
    this.sql = `
      WITH RECURSIVE walk (key, id, n) AS (
        SELECT ''::text, 0::bigint, 0::bigint
        UNION ALL
        SELECT c.last_key, CASE WHEN c.last_blocked THEN ${MAX_ID} ELSE c.last_id END, w.n + c.n
        FROM walk w, LATERAL (
          SELECT count(*) FILTER (WHERE NOT blocked) AS n,
            (array_agg(key ORDER BY key, id))[count(*)] AS last_key,
            (array_agg(id ORDER BY key, id))[count(*)] AS last_id,
            (array_agg(blocked ORDER BY key, id))[count(*)] AS last_blocked
          FROM (SELECT key, id, bool_or(${blocker}) OVER (PARTITION BY key ORDER BY id) AS blocked
                FROM (SELECT key, id, status, attempts FROM ${s}.inbox
                      WHERE subscription = $1 AND status IN ${open} AND (key, id) > (w.key, w.id)
                      ORDER BY key, id LIMIT ${CHUNK}) r) b) c
        WHERE w.n < $2 AND c.last_key IS NOT NULL)
      SELECT p.n >= $2 AND (SELECT max(n) FROM walk) >= $2 AS full,
        (SELECT cursor FROM ${s}.subscriptions WHERE name = $1) AS cursor
      FROM (SELECT count(*) AS n FROM (SELECT 1 FROM ${s}.inbox
            WHERE subscription = $1 AND status = 'pending' LIMIT $2) t) p`;
  }

  async read(db: Executor, cap: number): Promise<FetchGateReading> {
    const r = await queryPrepared<{ full: boolean; cursor: string | null }>(db, this.sql, [
      this.subscription,
      cap,
    ]);
    const row = r.rows[0];
    return { full: row?.full === true, cursor: row?.cursor ?? undefined };
  }
}
