import { channelsFor } from '../core/channels.ts';
import { BatonError, InvalidInputError } from '../core/errors.ts';
import type { Database, Executor } from '../db/executor.ts';
import { schemaIdent } from '../db/sql.ts';
import { feedPositionOf } from '../transports/transport.ts';
import {
  hasPositions,
  SubscriptionPositionsNotInstalledError,
  subscriptionNotFound,
} from './subscription-status.ts';

/**
 * An operator moves a subscription's cursor — the way on for a consumer
 * whose producer pruned past its cursor (410), or a way to read again:
 *
 *   forward  (to > cursor)  the events after the cursor up to `to` are never
 *                           read by this subscription: recorded in
 *                           `data_loss`, to be reconciled (`baton reconcile
 *                           --repair` repairs replicas of entities; other
 *                           events in the range are lost to it).
 *   backward (to < cursor)  the events in between are read again; the inbox
 *                           deduplicates them only while it still holds them
 *                           (handled entries are kept for the consumer's
 *                           `retentionMs`, 7 days by default): older ones are
 *                           handled a second time.
 *
 * One transaction: the subscription row is locked first (a consumer storing
 * a batch at that moment either commits before — the move starts from its
 * cursor — or finds its cursor moved and re-reads it), the cursor moved, the
 * loss recorded, and the consumer NOTIFYed; the notice is delivered at
 * commit, and a running consumer cuts its long-poll short and reads on from
 * the new cursor at once (without the notice it still does before its next
 * fetch). Positions are the HTTP feed's: whole numbers.
 */

/** Where to: the oldest position the producer said it still serves (recorded at its 410), or a given one. */
export type CursorTarget = { toOldest: true } | { to: string | number | bigint };

export interface CursorResetOptions {
  /** Schema holding Baton's tables. Default `baton`. */
  schema?: string;
  /** Work the move out and return it, changing nothing. */
  dryRun?: boolean;
  /** Who or why; added to the reason of a data-loss record. */
  note?: string;
}

export interface CursorReset {
  subscription: string;
  /** The cursor before the move (null: the subscription had read nothing yet). */
  from: string | null;
  to: string;
  direction: 'forward' | 'backward' | 'unchanged';
  /** False for a dry run, and for a move to where the cursor already is. */
  applied: boolean;
  /** A forward move: the range this subscription skips, recorded (`id` null on a dry run). */
  dataLoss: PlannedDataLoss | null;
  /** What else the move means: events read again, a cursor the producer will refuse again. */
  warnings: string[];
}

export interface PlannedDataLoss {
  id: string | null;
  /** The events after this position … */
  fromPosition: string;
  /** … up to and including this one. */
  toPosition: string;
  reason: string;
}

/** `toOldest` for a subscription whose current cursor its producer has not refused with a position. */
export class NoOldestRetainedError extends BatonError {
  constructor(
    readonly subscription: string,
    readonly cursor: string | null,
    why: string,
  ) {
    super(
      'BATON_NO_OLDEST_RETAINED',
      `cannot move subscription "${subscription}" to its producer's oldest retained position: ${why}. Nothing was changed. See \`baton consumers list\`; to move the cursor anyway, give the position (--to <position>).`,
    );
  }
}

/** Moves a subscription's cursor; see above for what a move forward and backward mean. */
export async function resetSubscriptionCursor(
  db: Database,
  subscription: string,
  target: CursorTarget,
  options: CursorResetOptions = {},
): Promise<CursorReset> {
  const schema = options.schema ?? 'baton';
  const s = schemaIdent(schema);
  const given = 'to' in target ? parsePosition(target.to) : undefined;
  if (!(await hasPositions(db, s))) throw new SubscriptionPositionsNotInstalledError(schema);
  return db.transaction(async (tx) => {
    const row = await lockSubscription(tx, s, subscription);
    const from = row.cursor;
    const to = given ?? oldestRetained(subscription, row);
    if (given !== undefined) refuseBarePositionOnStream(subscription, from, given);
    const direction = compare(currentPosition(subscription, from), to);
    const plan: CursorReset = {
      subscription,
      from,
      to,
      direction,
      applied: false,
      dataLoss:
        direction === 'forward'
          ? {
              id: null,
              fromPosition: feedPositionOf(from ?? '0'),
              toPosition: feedPositionOf(to),
              reason: reason(given, to, options),
            }
          : null,
      warnings: warnings(from, to, direction, row.oldest_retained),
    };
    if (options.dryRun || direction === 'unchanged') return plan;
    await tx.query(
      `UPDATE ${s}.subscriptions SET cursor = $2, updated_at = now(), seal = ${s}.cursor_seal(name, $2)
       WHERE name = $1`,
      [subscription, to],
    );
    const id = plan.dataLoss ? await recordDataLoss(tx, s, subscription, plan.dataLoss) : null;
    await tx.query('SELECT pg_notify($1, $2)', [channelsFor(schema).cursor, subscription]);
    return { ...plan, applied: true, dataLoss: plan.dataLoss && { ...plan.dataLoss, id } };
  });
}

/**
 * Feed positions are whole numbers (the HTTP feed's `seq`), at most 18
 * digits; a NATS subscription's cursor is `<stream sequence>@<position>`
 * (see `natsSource`), whose position is the part after `@`.
 */
export function parsePosition(value: string | number | bigint): string {
  const text = String(value).trim();
  if (/^[0-9]{1,18}@[0-9]{1,18}$/.test(text)) return text;
  if (!/^[0-9]{1,18}$/.test(text)) {
    throw new InvalidInputError(
      `position "${String(value)}" is not a feed position: give a whole number of at most 18 digits (the oldest retained position is shown by \`baton consumers list\`).`,
    );
  }
  return BigInt(text).toString();
}

interface LockedSubscription {
  cursor: string | null;
  expired_cursor: string | null;
  cursor_expired_at: Date | null;
  oldest_retained: string | null;
}

async function lockSubscription(
  tx: Executor,
  s: string,
  subscription: string,
): Promise<LockedSubscription> {
  const r = await tx.query<LockedSubscription>(
    `SELECT cursor, expired_cursor, cursor_expired_at, oldest_retained
     FROM ${s}.subscriptions WHERE name = $1 FOR UPDATE`,
    [subscription],
  );
  const row = r.rows[0];
  if (!row) throw await subscriptionNotFound(tx, s, subscription);
  return row;
}

/** The recorded position, only while the producer's refusal is of the current cursor. */
function oldestRetained(subscription: string, row: LockedSubscription): string {
  const cursor = row.cursor;
  if (row.cursor_expired_at === null) {
    throw new NoOldestRetainedError(
      subscription,
      cursor,
      `none is recorded — its producer has not refused its cursor (${cursor ?? 'none yet'}); a consumer records the position when the feed answers 410`,
    );
  }
  if (row.expired_cursor !== cursor) {
    throw new NoOldestRetainedError(
      subscription,
      cursor,
      `the one recorded was for cursor ${row.expired_cursor ?? '(none)'}, which the producer refused; the cursor has moved since, to ${cursor ?? '(none)'}`,
    );
  }
  if (row.oldest_retained === null) {
    throw new NoOldestRetainedError(
      subscription,
      cursor,
      `its producer refused cursor ${cursor ?? '(none)'} without naming its oldest retained position (a producer on an older Baton)`,
    );
  }
  return row.oldest_retained;
}

/**
 * A NATS subscription reads by stream sequence, and a stream's sequences are
 * not the producer's feed positions (copies and repairs take sequences of
 * their own): a bare number would be read as one or the other by different
 * parts, so the operator names both.
 */
function refuseBarePositionOnStream(subscription: string, from: string | null, to: string): void {
  if (from?.includes('@') && !to.includes('@'))
    throw new InvalidInputError(
      `subscription "${subscription}" reads a NATS stream (cursor "${from}" is <stream sequence>@<feed position>): give the position in the same form, e.g. --to 1200@1187 (\`baton consumers list\` shows the cursor; --to-oldest needs neither). Nothing was changed.`,
    );
}

function currentPosition(subscription: string, cursor: string | null): string {
  if (cursor === null) return '0';
  if (/^[0-9]{1,18}(@[0-9]{1,18})?$/.test(cursor)) return cursor;
  throw new InvalidInputError(
    `subscription "${subscription}" has cursor "${cursor}", which is not a whole-number feed position: moving it is supported for feeds with numbered positions (the HTTP feed) only.`,
  );
}

function compare(from: string, to: string): CursorReset['direction'] {
  const a = BigInt(feedPositionOf(from));
  const b = BigInt(feedPositionOf(to));
  return b > a ? 'forward' : b < a ? 'backward' : 'unchanged';
}

function reason(given: string | undefined, to: string, options: CursorResetOptions): string {
  const how =
    given === undefined
      ? `to the producer's oldest retained position ${to}: it had pruned these events before this subscription read them`
      : `to position ${to}`;
  return `cursor moved by an operator (${how}${options.note ? `; ${options.note}` : ''})`;
}

function warnings(
  from: string | null,
  to: string,
  direction: CursorReset['direction'],
  oldest: string | null,
): string[] {
  const list: string[] = [];
  if (direction === 'backward') {
    list.push(
      `the events after ${to} up to ${from} are read again: the inbox deduplicates them only while it still holds them (handled entries are kept for the consumer's retentionMs, 7 days by default); older ones are handled a second time.`,
    );
  }
  if (oldest !== null && BigInt(feedPositionOf(to)) < BigInt(feedPositionOf(oldest))) {
    list.push(
      `the producer last said it serves from position ${oldest} on: a cursor before it is refused again (410).`,
    );
  }
  return list;
}

async function recordDataLoss(
  tx: Executor,
  s: string,
  subscription: string,
  loss: PlannedDataLoss,
): Promise<string> {
  const r = await tx.query<{ id: string }>(
    `INSERT INTO ${s}.data_loss (subscription, from_position, to_position, reason)
     VALUES ($1, $2, $3, $4) RETURNING id::text`,
    [subscription, loss.fromPosition, loss.toPosition, loss.reason],
  );
  return r.rows[0]!.id;
}
