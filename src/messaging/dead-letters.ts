import { BatonError, InvalidInputError, NotFoundError } from '../core/errors.ts';
import type { Database, Executor } from '../db/executor.ts';
import { schemaIdent } from '../db/sql.ts';
import type { InboxState } from './inbox-states.ts';
import { subscriptionNotFound } from './subscription-status.ts';

/**
 * The operator's view of dead letters: inbox entries a consumer gave up on
 * (attempts exhausted, a `TerminalError`, an unknown type, undecodable input).
 * They wait, with their error, until someone looks at them:
 *
 *   dead ──retry──► pending    attempts reset to 0, due now; `last_error` kept for history
 *   dead ──discard─► discarded  never handled; later events of its key go on
 *
 * Retry and discard change only `dead` entries, all or nothing: one id that is
 * unknown or not dead fails the whole call and changes no row. A retried
 * entry is the oldest open entry of its key, so a running consumer handles
 * it before the key's later events (per-key order holds); consumers poll
 * their inbox at least once a second, so no restart is needed.
 */

/** One line of `baton dlq list`. */
export interface DeadLetterSummary {
  inboxId: string;
  subscription: string;
  /** Feed position the entry was received at (source-specific, opaque). */
  position: string;
  eventId: string | null;
  /** Null for input that could not be decoded. */
  type: string | null;
  key: string;
  attempts: number;
  lastError: string | null;
  receivedAt: string;
}

/** Everything stored about one inbox entry (`baton dlq show`). */
export interface DeadLetterDetail extends DeadLetterSummary {
  status: InboxState;
  version: number | null;
  source: string | null;
  payload: unknown;
  headers: Record<string, string> | null;
  /** The input as received, kept when it could not be decoded. */
  raw: string | null;
  occurredAt: string | null;
  nextAttemptAt: string;
  handledAt: string | null;
}

export interface DeadLetterList {
  deadLetters: DeadLetterSummary[];
  /** All dead letters matching the filter (the list stops at `limit`). */
  total: number;
}

export interface DeadLetterOptions {
  /** Schema holding Baton's tables. Default `baton`. */
  schema?: string;
}

/** Which dead letters to retry: the given inbox ids, or all of them (of one subscription). */
export type RetryTarget = { ids: readonly InboxId[] } | { all: true; subscription?: string };

export interface RetryResult {
  /** Entries moved from `dead` back to `pending`. */
  retried: string[];
  /**
   * With `all`: dead letters left alone because they hold undecodable input
   * (no event a handler could take); review and discard them.
   */
  skipped: string[];
}

type InboxId = string | number | bigint;

const STATE_MEANING: Readonly<Record<InboxState, string>> = {
  pending: 'its consumer will still try it',
  handled: 'its handler already committed',
  dead: 'a dead letter',
  discarded: 'an operator gave it up',
};

/** An id named an inbox entry that is not a dead letter (handled, pending, discarded). */
export class NotDeadLetterError extends BatonError {
  constructor(
    readonly entries: readonly { inboxId: string; status: InboxState }[],
    action: 'retry' | 'discard',
  ) {
    const what = entries
      .map((e) => `inbox entry ${e.inboxId} is ${e.status} (${STATE_MEANING[e.status]})`)
      .join('; ');
    super(
      'BATON_NOT_DEAD_LETTER',
      `cannot ${action}: ${what}. Only dead letters can be ${action === 'retry' ? 'retried' : 'discarded'}; nothing was changed. See \`baton dlq list\` for the dead ones.`,
    );
  }
}

/** A retry was asked for input that was never decoded into an event: it can never succeed. */
export class UndecodableDeadLetterError extends BatonError {
  constructor(readonly inboxIds: readonly string[]) {
    super(
      'BATON_UNDECODABLE_DEAD_LETTER',
      `cannot retry: inbox ${inboxIds.length === 1 ? 'entry' : 'entries'} ${inboxIds.join(', ')} ${inboxIds.length === 1 ? 'holds' : 'hold'} input that could not be decoded into an event, so no handler can take it; nothing was changed. Inspect it with \`baton dlq show\`, fix the producer, then discard it.`,
    );
  }
}

const DEFAULT_LIST_LIMIT = 50;

/**
 * Dead letters, oldest first, optionally of one subscription. Read-only.
 * The error is returned whole; the CLI shortens it for its table.
 */
export async function listDeadLetters(
  db: Executor,
  options: DeadLetterOptions & {
    subscription?: string;
    limit?: number;
    /** The next page: dead letters after this inbox id (the last of the page before). */
    after?: InboxId;
  } = {},
): Promise<DeadLetterList> {
  const s = schemaIdent(options.schema ?? 'baton');
  const limit = options.limit ?? DEFAULT_LIST_LIMIT;
  if (!(Number.isInteger(limit) && limit >= 1)) {
    throw new InvalidInputError(`limit must be a positive integer (got ${String(limit)}).`);
  }
  await assertSubscriptionExists(db, s, options.subscription);
  const subscription = options.subscription ?? null;
  const after = options.after === undefined ? null : parseInboxId(options.after);
  const filter = "status = 'dead' AND ($1::text IS NULL OR subscription = $1)";
  // One statement, so the page and the total come from the same snapshot; each
  // is one range of a partial index (inbox_dead, inbox_dead_by_subscription).
  const rows = await db.query<SummaryRow & { total: string }>(
    // ORDER BY inbox.id (the bigint), not the text column named id in the output.
    `SELECT ${SUMMARY_COLUMNS}, (SELECT count(*) FROM ${s}.inbox WHERE ${filter}) AS total
       FROM ${s}.inbox
      WHERE ${filter} AND ($3::bigint IS NULL OR inbox.id > $3)
      ORDER BY inbox.id LIMIT $2`,
    [subscription, limit, after],
  );
  return {
    deadLetters: rows.rows.map(toSummary),
    total: Number(rows.rows[0]?.total ?? 0),
  };
}

/**
 * One inbox entry with everything stored about it. Any state is shown (a
 * retried entry can be followed); an id that names no entry throws
 * `NotFoundError`.
 */
export async function showDeadLetter(
  db: Executor,
  inboxId: InboxId,
  options: DeadLetterOptions = {},
): Promise<DeadLetterDetail> {
  const s = schemaIdent(options.schema ?? 'baton');
  const id = parseInboxId(inboxId);
  const result = await db.query<DetailRow>(
    `SELECT ${SUMMARY_COLUMNS}, status, version::text, source, payload, headers, raw,
       occurred_at, next_attempt_at, handled_at
     FROM ${s}.inbox WHERE id = $1`,
    [id],
  );
  const row = result.rows[0];
  if (!row) throw notFound([id]);
  return {
    ...toSummary(row),
    status: row.status,
    version: row.version === null ? null : Number(row.version),
    source: row.source,
    payload: row.payload,
    headers: row.headers,
    raw: row.raw,
    occurredAt: iso(row.occurred_at),
    nextAttemptAt: row.next_attempt_at.toISOString(),
    handledAt: iso(row.handled_at),
  };
}

/**
 * Moves dead letters back to `pending`: attempts reset to 0, due at once,
 * `last_error` kept. With ids, all must be dead letters holding an event, or
 * nothing changes (`NotFoundError`, `NotDeadLetterError`,
 * `UndecodableDeadLetterError`). With `all`, undecodable ones are skipped.
 */
export async function retryDeadLetters(
  db: Database,
  target: RetryTarget,
  options: DeadLetterOptions = {},
): Promise<RetryResult> {
  const s = schemaIdent(options.schema ?? 'baton');
  const retrySql = `UPDATE ${s}.inbox SET status = 'pending', attempts = 0, next_attempt_at = now(),
      seal = ${s}.inbox_seal(subscription, event_id, type, key, version, payload, headers, 'pending')
    WHERE id = ANY($1::bigint[]) AND status = 'dead'`;
  if ('all' in target) {
    await assertSubscriptionExists(db, s, target.subscription);
    return db.transaction(async (tx) => {
      const dead = await tx.query<{ id: string; undecodable: boolean }>(
        `SELECT id::text, type IS NULL AS undecodable FROM ${s}.inbox
         WHERE status = 'dead' AND ($1::text IS NULL OR subscription = $1)
         ORDER BY inbox.id FOR UPDATE`,
        [target.subscription ?? null],
      );
      const retried = dead.rows.filter((r) => !r.undecodable).map((r) => r.id);
      const skipped = dead.rows.filter((r) => r.undecodable).map((r) => r.id);
      if (retried.length > 0) await tx.query(retrySql, [retried]);
      return { retried, skipped };
    });
  }
  const ids = parseInboxIds(target.ids);
  return db.transaction(async (tx) => {
    const rows = await lockEntries(tx, s, ids);
    assertAllDead(ids, rows, 'retry');
    const undecodable = rows.filter((r) => r.undecodable).map((r) => r.id);
    if (undecodable.length > 0) throw new UndecodableDeadLetterError(undecodable);
    await tx.query(retrySql, [ids]);
    return { retried: ids, skipped: [] };
  });
}

/**
 * Marks dead letters `discarded`: they are never handled, and later events
 * of their keys are no longer held back. All ids must be dead letters, or
 * nothing changes. Returns the discarded ids.
 */
export async function discardDeadLetters(
  db: Database,
  inboxIds: readonly InboxId[],
  options: DeadLetterOptions = {},
): Promise<string[]> {
  const s = schemaIdent(options.schema ?? 'baton');
  const ids = parseInboxIds(inboxIds);
  return db.transaction(async (tx) => {
    const rows = await lockEntries(tx, s, ids);
    assertAllDead(ids, rows, 'discard');
    await tx.query(
      `UPDATE ${s}.inbox SET status = 'discarded',
         seal = ${s}.inbox_seal(subscription, event_id, type, key, version, payload, headers, 'discarded')
       WHERE id = ANY($1::bigint[]) AND status = 'dead'`,
      [ids],
    );
    return ids;
  });
}

interface LockedRow {
  id: string;
  status: InboxState;
  undecodable: boolean;
}

/** Locks the entries so a consumer cannot change them between the check and the update. */
async function lockEntries(tx: Executor, s: string, ids: readonly string[]): Promise<LockedRow[]> {
  const result = await tx.query<LockedRow>(
    `SELECT id::text, status, type IS NULL AS undecodable FROM ${s}.inbox
     WHERE id = ANY($1::bigint[]) ORDER BY inbox.id FOR UPDATE`,
    [ids],
  );
  return result.rows;
}

function assertAllDead(
  ids: readonly string[],
  rows: readonly LockedRow[],
  action: 'retry' | 'discard',
): void {
  const byId = new Map(rows.map((r) => [r.id, r]));
  const missing = ids.filter((id) => !byId.has(id));
  if (missing.length > 0) throw notFound(missing);
  const notDead = rows.filter((r) => r.status !== 'dead');
  if (notDead.length > 0) {
    throw new NotDeadLetterError(
      notDead.map((r) => ({ inboxId: r.id, status: r.status })),
      action,
    );
  }
}

function notFound(ids: readonly string[]): NotFoundError {
  const what = ids.map((id) => `no dead letter with id ${id}`).join('; ');
  return new NotFoundError(
    `${what}: take ids from the ID column of \`baton dlq list\` (and check --schema); nothing was changed.`,
  );
}

/** A misspelt subscription must not look like "no dead letters". */
async function assertSubscriptionExists(
  db: Executor,
  s: string,
  subscription: string | undefined,
): Promise<void> {
  if (subscription === undefined) return;
  const found = await db.query(`SELECT 1 FROM ${s}.subscriptions WHERE name = $1`, [subscription]);
  if (found.rows.length === 0) throw await subscriptionNotFound(db, s, subscription);
}

/** Inbox ids are bigserial: decimal digits, passed as text so no precision is lost. */
export function parseInboxId(value: InboxId): string {
  const text = String(value).trim();
  if (!/^[0-9]{1,19}$/.test(text) || BigInt(text) > 9223372036854775807n) {
    throw new InvalidInputError(
      `inbox id "${String(value)}" is not a valid id: use a number from the ID column of \`baton dlq list\`.`,
    );
  }
  return BigInt(text).toString();
}

function parseInboxIds(values: readonly InboxId[]): string[] {
  if (values.length === 0) throw new InvalidInputError('no inbox ids given.');
  return [...new Set(values.map(parseInboxId))];
}

const SUMMARY_COLUMNS = `id::text, subscription, position, event_id::text, type, key, attempts,
  last_error, received_at`;

interface SummaryRow {
  id: string;
  subscription: string;
  position: string;
  event_id: string | null;
  type: string | null;
  key: string;
  attempts: number;
  last_error: string | null;
  received_at: Date;
}

interface DetailRow extends SummaryRow {
  status: InboxState;
  version: string | null;
  source: string | null;
  payload: unknown;
  headers: Record<string, string> | null;
  raw: string | null;
  occurred_at: Date | null;
  next_attempt_at: Date;
  handled_at: Date | null;
}

function toSummary(row: SummaryRow): DeadLetterSummary {
  return {
    inboxId: row.id,
    subscription: row.subscription,
    position: row.position,
    eventId: row.event_id,
    type: row.type,
    key: row.key,
    attempts: row.attempts,
    lastError: row.last_error,
    receivedAt: row.received_at.toISOString(),
  };
}

function iso(value: Date | null): string | null {
  return value === null ? null : value.toISOString();
}
