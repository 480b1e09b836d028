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
 * statement (one snapshot), each from its own index range per subscription
 * (partial indexes on pending, dead and blocking entries): its cost follows
 * the open entries, not the inbox's history. On a schema without migration 8 the mode
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
  const mode = positions ? 's.on_dead_letter' : `'block-key'`;
  // Each figure its own index range per subscription, so the cost follows the
  // open entries of the figure, not the inbox: counts from the partial indexes
  // alone; blocked keys from inbox_blockers; entries behind a blocker by
  // looking, for each pending entry, for a blocker before it in its key.
  const blocker = `((b.status = 'pending' AND b.attempts > 0)
    OR (b.status = 'dead' AND b.type IS NOT NULL AND ${mode} = 'block-key'))`;
  const result = await db.query<SubscriptionRow>(
    `SELECT s.name, s.source, s.cursor, s.updated_at, ${columns},
       (SELECT count(*) FROM ${s}.inbox i WHERE i.subscription = s.name AND i.status = 'pending') AS pending,
       (SELECT count(*) FROM ${s}.inbox i WHERE i.subscription = s.name AND i.status = 'dead') AS dead,
       (SELECT coalesce(greatest(extract(epoch FROM now() - min(i.received_at)), 0), 0)
          FROM ${s}.inbox i WHERE i.subscription = s.name AND i.status = 'pending')::float8 AS oldest_pending,
       CASE WHEN ${mode} = 'block-key'
         THEN (SELECT count(DISTINCT b.key) FROM ${s}.inbox b WHERE b.subscription = s.name
                 AND ((b.status = 'pending' AND b.attempts > 0) OR (b.status = 'dead' AND b.type IS NOT NULL)))
         ELSE (SELECT count(DISTINCT b.key) FROM ${s}.inbox b WHERE b.subscription = s.name
                 AND b.status = 'pending' AND b.attempts > 0)
       END AS blocked_keys,
       (SELECT count(*) FROM ${s}.inbox p
          WHERE p.subscription = s.name AND p.status = 'pending'
            AND EXISTS (SELECT 1 FROM ${s}.inbox b
              WHERE b.subscription = p.subscription AND b.key = p.key AND b.id < p.id
                AND b.status IN ('pending', 'dead') AND ${blocker})) AS blocked_entries
     FROM ${s}.subscriptions s
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
