import type { Executor } from '../db/executor.ts';
import type { DeadLetterMode } from './inbox-states.ts';

/** One subscription as an operator sees it (`baton status`, `baton consumers list`). */
export interface SubscriptionStatus {
  name: string;
  source: string;
  /** Position in the source the next fetch starts after (null before the first batch). */
  cursor: string | null;
  /** The consumer's dead-letter mode, as it recorded it at start-up. */
  deadLetterMode: DeadLetterMode;
  /** Inbox entries waiting for their handler (including ones waiting for a retry or behind a blocked key). */
  pending: number;
  /** Seconds since the oldest pending entry was received (0 when none). */
  oldestPendingAgeSeconds: number;
  deadLetters: number;
  /**
   * Keys held up by a failure: a dead letter (with `block-key`; undecodable
   * input, which has a key of its own, is not counted) or a pending entry
   * that failed and waits for its retry.
   */
  blockedKeys: number;
  /**
   * Pending entries waiting behind such a failure in their key. They do not
   * count toward the consumer's `maxPendingEntries` (other keys keep
   * flowing), so this grows until the failure is resolved.
   */
  blockedEntries: number;
  /** When the cursor last moved (or the subscription was created). */
  updatedAt: string;
}

/**
 * Every subscription in the schema, with its inbox figures. One statement
 * (one snapshot); it reads every open inbox entry, so it is for operators,
 * not for a hot path.
 */
export async function readSubscriptions(db: Executor, s: string): Promise<SubscriptionStatus[]> {
  const result = await db.query<SubscriptionRow>(
    `SELECT s.name, s.source, s.cursor, s.updated_at, s.on_dead_letter,
       coalesce(o.pending, 0) AS pending, coalesce(o.dead, 0) AS dead,
       coalesce(o.oldest_pending, 0)::float8 AS oldest_pending,
       coalesce(o.blocked_keys, 0) AS blocked_keys, coalesce(o.blocked_entries, 0) AS blocked_entries
     FROM ${s}.subscriptions s
     LEFT JOIN (
       SELECT subscription,
         count(*) FILTER (WHERE status = 'pending') AS pending,
         count(*) FILTER (WHERE status = 'dead') AS dead,
         greatest(extract(epoch FROM now() - min(received_at) FILTER (WHERE status = 'pending')), 0)
           AS oldest_pending,
         count(DISTINCT key) FILTER (WHERE blocker) AS blocked_keys,
         count(*) FILTER (WHERE status = 'pending' AND behind) AS blocked_entries
       FROM (
         SELECT e.subscription, e.key, e.status, e.received_at, e.blocker,
           coalesce(bool_or(e.blocker) OVER (PARTITION BY e.subscription, e.key ORDER BY e.id
             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false) AS behind
         FROM (
           SELECT i.subscription, i.key, i.id, i.status, i.received_at,
             (i.status = 'pending' AND i.attempts > 0)
               OR (i.status = 'dead' AND i.type IS NOT NULL AND t.on_dead_letter = 'block-key')
               AS blocker
           FROM ${s}.inbox i JOIN ${s}.subscriptions t ON t.name = i.subscription
           WHERE i.status IN ('pending', 'dead')) e) x
       GROUP BY subscription) o ON o.subscription = s.name
     ORDER BY s.name`,
  );
  return result.rows.map(toSubscriptionStatus);
}

interface SubscriptionRow {
  name: string;
  source: string;
  cursor: string | null;
  updated_at: Date;
  on_dead_letter: DeadLetterMode;
  pending: string;
  dead: string;
  oldest_pending: number;
  blocked_keys: string;
  blocked_entries: string;
}

function toSubscriptionStatus(row: SubscriptionRow): SubscriptionStatus {
  return {
    name: row.name,
    source: row.source,
    cursor: row.cursor,
    deadLetterMode: row.on_dead_letter,
    pending: Number(row.pending),
    oldestPendingAgeSeconds: Math.round(row.oldest_pending * 1000) / 1000,
    deadLetters: Number(row.dead),
    blockedKeys: Number(row.blocked_keys),
    blockedEntries: Number(row.blocked_entries),
    updatedAt: row.updated_at.toISOString(),
  };
}
