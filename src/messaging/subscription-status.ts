import { BatonError, NotFoundError } from '../core/errors.ts';
import type { Executor } from '../db/executor.ts';
import { schemaIdent } from '../db/sql.ts';
import type { DeadLetterMode } from './inbox-states.ts';

/** One subscription as an operator sees it (`baton status`, `baton consumers list`). */
export interface SubscriptionStatus {
  name: string;
  source: string;
  /** Position in the source the next fetch starts after (null before the first batch). */
  cursor: string | null;
  /** The consumer's dead-letter mode, as it recorded it at start-up. */
  deadLetterMode: DeadLetterMode;
  /**
   * Set while the producer refuses the cursor (410: the events after it were
   * pruned) and nobody has moved it: the consumer cannot go on. Move it with
   * `baton consumers reset` (`resetSubscriptionCursor`).
   */
  stuck: StuckCursor | null;
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
  /** Ranges of the feed this subscription skipped that nobody has marked reconciled, oldest first. */
  dataLoss: DataLossRecord[];
  /** When the cursor last moved (or the subscription was created). */
  updatedAt: string;
}

export interface StuckCursor {
  /** The cursor the producer refused. */
  cursor: string | null;
  /** When it first refused it. */
  since: string;
  /**
   * The oldest position the producer still serves in full (its last answer):
   * moving the cursor there reads everything it still has, and loses the
   * events in between. Null if the producer did not say.
   */
  oldestRetained: string | null;
}

/** A range of a source's feed one subscription will never read: the events after `fromPosition` up to and including `toPosition`. */
export interface DataLossRecord {
  id: string;
  subscription: string;
  fromPosition: string;
  toPosition: string;
  reason: string;
  at: string;
}

/** Migration 8 (subscription positions) is not applied in this schema. */
export class SubscriptionPositionsNotInstalledError extends BatonError {
  constructor(readonly schema: string) {
    super(
      'BATON_MIGRATION_MISSING',
      `schema "${schema}" of this database lacks migration 8 (subscription positions and data-loss records): run \`baton migrate\` with the same database URL and --schema.`,
    );
  }
}

/**
 * Every subscription in the schema, with its inbox figures, stuck state and
 * unreconciled data loss, by name. Read-only.
 */
export async function listSubscriptions(
  db: Executor,
  options: { schema?: string } = {},
): Promise<SubscriptionStatus[]> {
  const schema = options.schema ?? 'baton';
  const s = schemaIdent(schema);
  if (!(await hasPositions(db, s))) throw new SubscriptionPositionsNotInstalledError(schema);
  return readSubscriptions(db, s);
}

/** True when migration 8's columns and table are there. */
export async function hasPositions(db: Executor, s: string): Promise<boolean> {
  const r = await db.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [
    `${s}.data_loss`,
  ]);
  return r.rows[0]?.ok === true;
}

/**
 * The subscriptions with their figures. The inbox figures come from one
 * statement (one snapshot); it reads every open inbox entry, so it is for
 * operators, not for a hot path. On a schema without migration 8 the mode
 * reads as the default and nothing is stuck or lost (none was recorded).
 */
export async function readSubscriptions(db: Executor, s: string): Promise<SubscriptionStatus[]> {
  const positions = await hasPositions(db, s);
  const columns = positions
    ? `s.on_dead_letter, s.cursor_expired_at,
       CASE WHEN s.cursor_expired_at IS NOT NULL AND s.expired_cursor IS NOT DISTINCT FROM s.cursor
         THEN true ELSE false END AS stuck, s.oldest_retained`
    : `'block-key' AS on_dead_letter, NULL::timestamptz AS cursor_expired_at, false AS stuck,
       NULL::text AS oldest_retained`;
  const mode = positions ? 't.on_dead_letter' : `'block-key'`;
  const result = await db.query<SubscriptionRow>(
    `SELECT s.name, s.source, s.cursor, s.updated_at, ${columns},
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
               OR (i.status = 'dead' AND i.type IS NOT NULL AND ${mode} = 'block-key')
               AS blocker
           FROM ${s}.inbox i JOIN ${s}.subscriptions t ON t.name = i.subscription
           WHERE i.status IN ('pending', 'dead')) e) x
       GROUP BY subscription) o ON o.subscription = s.name
     ORDER BY s.name`,
  );
  const losses = positions ? await readDataLoss(db, s) : [];
  return result.rows.map((row) =>
    toSubscriptionStatus(
      row,
      losses.filter((l) => l.subscription === row.name),
    ),
  );
}

/** Data-loss records not yet reconciled, oldest first. */
async function readDataLoss(db: Executor, s: string): Promise<DataLossRecord[]> {
  const r = await db.query<DataLossRow>(
    `SELECT id::text, subscription, from_position, to_position, reason, at
     FROM ${s}.data_loss WHERE reconciled_at IS NULL ORDER BY id`,
  );
  return r.rows.map((row) => ({
    id: row.id,
    subscription: row.subscription,
    fromPosition: row.from_position,
    toPosition: row.to_position,
    reason: row.reason,
    at: row.at.toISOString(),
  }));
}

/** A misspelt subscription gets the list of real ones, not a silent "nothing". */
export async function subscriptionNotFound(
  db: Executor,
  s: string,
  subscription: string,
): Promise<NotFoundError> {
  const result = await db.query<{ name: string }>(
    `SELECT name FROM ${s}.subscriptions ORDER BY name`,
  );
  const names = result.rows.map((r) => r.name);
  return new NotFoundError(
    `no subscription named "${subscription}" in this database: known subscriptions are ${names.length > 0 ? names.map((n) => `"${n}"`).join(', ') : 'none (no consumer has started here)'}. Check the name (see \`baton consumers list\`).`,
  );
}

interface SubscriptionRow {
  name: string;
  source: string;
  cursor: string | null;
  updated_at: Date;
  on_dead_letter: DeadLetterMode;
  cursor_expired_at: Date | null;
  stuck: boolean;
  oldest_retained: string | null;
  pending: string;
  dead: string;
  oldest_pending: number;
  blocked_keys: string;
  blocked_entries: string;
}

interface DataLossRow {
  id: string;
  subscription: string;
  from_position: string;
  to_position: string;
  reason: string;
  at: Date;
}

function toSubscriptionStatus(
  row: SubscriptionRow,
  dataLoss: DataLossRecord[],
): SubscriptionStatus {
  return {
    name: row.name,
    source: row.source,
    cursor: row.cursor,
    deadLetterMode: row.on_dead_letter,
    stuck:
      row.stuck && row.cursor_expired_at
        ? {
            cursor: row.cursor,
            since: row.cursor_expired_at.toISOString(),
            oldestRetained: row.oldest_retained,
          }
        : null,
    pending: Number(row.pending),
    oldestPendingAgeSeconds: Math.round(row.oldest_pending * 1000) / 1000,
    deadLetters: Number(row.dead),
    blockedKeys: Number(row.blocked_keys),
    blockedEntries: Number(row.blocked_entries),
    dataLoss,
    updatedAt: row.updated_at.toISOString(),
  };
}
