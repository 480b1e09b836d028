import type { BatonEvent } from '../core/event.ts';
import type { Database, Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';
import type { IncomingItem } from '../transports/transport.ts';
import { type EventColumns, toBatonEvent } from './event-row.ts';
import type { DeadLetterMode } from './inbox-states.ts';

/** A row ready to be written to the inbox: an event to handle, or a dead letter from birth. */
interface InboxInsert {
  position: string;
  id: string | null;
  type: string | null;
  key: string;
  version: number | null;
  payload: unknown;
  headers: Record<string, string> | null;
  occurredAt: string | null;
  source: string | null;
  raw: string | null;
  status: 'pending' | 'dead' | 'handled';
  error: string | null;
}

/** An event about to be stored, as a handler sees it (the same form a claim gives). */
function toEntry(row: InboxInsert): InboxEntry {
  return {
    inboxId: '',
    attempts: 0,
    event: {
      id: row.id as string,
      type: row.type as string,
      key: row.key,
      version: row.version ?? 0,
      payload: row.payload,
      headers: row.headers ?? {},
      occurredAt: new Date(row.occurredAt ?? 0).toISOString(),
      source: row.source ?? '',
    },
  };
}

/** Claimed inbox entry handed to a handler. */
export interface InboxEntry {
  inboxId: string;
  attempts: number;
  event: BatonEvent;
}

/**
 * Handles events of a batch inside the transaction that stores it; throws if
 * any handler fails (the batch is then stored for the worker loops instead).
 */
export type HandleOnIngest = (tx: Executor, entries: readonly InboxEntry[]) => Promise<void>;

/** SQL for one subscription's inbox (statements built once, values always parameters). */
export class InboxStore {
  private readonly insertSql: string;
  private readonly claimSql: string;
  private readonly alreadyThereSql: string;
  private readonly deadBlocks: boolean;

  constructor(
    readonly schemaSql: string,
    readonly subscription: string,
    private readonly deadLetterMode: DeadLetterMode,
  ) {
    const s = schemaSql;
    this.deadBlocks = deadLetterMode === 'block-key';
    this.insertSql = `
      INSERT INTO ${s}.inbox (subscription, position, event_id, type, key, version, payload, headers,
        occurred_at, source, raw, status, last_error, attempts, handled_at, seal)
      SELECT $1, x->>'position', (x->>'id')::uuid, x->>'type', x->>'key', (x->>'version')::bigint,
        x->'payload', x->'headers', (x->>'occurredAt')::timestamptz, x->>'source', x->>'raw',
        x->>'status', x->>'error', 0, CASE WHEN x->>'status' = 'handled' THEN now() END,
        ${s}.inbox_seal($1, (x->>'id')::uuid, x->>'type', x->>'key', (x->>'version')::bigint,
          x->'payload', x->'headers', x->>'status')
      FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS t(x, ord)
      ORDER BY ord
      ON CONFLICT (subscription, event_id) DO NOTHING`;
    const blocking = deadLetterMode === 'block-key' ? `('pending', 'dead')` : `('pending')`;
    // Which of a batch's events the inbox has already, and which of its keys have entries waiting.
    this.alreadyThereSql = `
      SELECT
        (SELECT coalesce(array_agg(event_id::text), '{}') FROM ${s}.inbox
         WHERE subscription = $1 AND event_id = ANY($2::uuid[])) AS seen,
        (SELECT coalesce(array_agg(DISTINCT key), '{}') FROM ${s}.inbox
         WHERE subscription = $1 AND key = ANY($3::text[]) AND status IN ${blocking}) AS waiting`;
    // The head of each key: the oldest open entry. Taking only heads keeps
    // per-key order with any number of workers; SKIP LOCKED lets workers
    // share keys without waiting on each other. Written as `id = (SELECT
    // min(id) …)`, not NOT EXISTS: with stale statistics (a consumer that was
    // caught up, then gets a burst) PostgreSQL turned the NOT EXISTS into a
    // plan quadratic in the backlog (seconds per claim at 5,000 pending).
    this.claimSql = `
      SELECT i.id::text AS inbox_id, i.attempts, i.event_id::text AS id, i.type, i.key, i.version,
        i.payload, i.headers, i.occurred_at, i.source
      FROM ${s}.inbox i
      WHERE i.subscription = $1 AND i.status = 'pending' AND i.next_attempt_at <= now()
        AND i.event_id IS NOT NULL
        -- An entry changed outside Baton (its seal no longer matches) is never handled:
        -- it holds its key until the caretaker restores it (or an operator accepts it).
        AND i.seal = ${s}.inbox_seal(i.subscription, i.event_id, i.type, i.key, i.version, i.payload,
                                     i.headers, i.status)
        AND i.id = (
          SELECT min(j.id) FROM ${s}.inbox j
          WHERE j.subscription = $1 AND j.key = i.key AND j.status IN ${blocking})
      ORDER BY i.id
      LIMIT $2
      FOR UPDATE OF i SKIP LOCKED`;
  }

  async ensureSubscription(
    db: Executor,
    source: string,
    types: readonly string[],
  ): Promise<string | undefined> {
    // The mode is recorded so status readers know which entries block their key.
    await queryPrepared(
      db,
      `INSERT INTO ${this.schemaSql}.subscriptions (name, source, types, on_dead_letter, seal)
       VALUES ($1, $2, $3, $4, ${this.schemaSql}.cursor_seal($1, NULL))
       ON CONFLICT (name) DO UPDATE
       SET types = excluded.types, source = excluded.source, on_dead_letter = excluded.on_dead_letter`,
      [this.subscription, source, types, this.deadLetterMode],
    );
    return this.readCursor(db);
  }

  async readCursor(db: Executor): Promise<string | undefined> {
    const r = await queryPrepared<{ cursor: string | null }>(
      db,
      `SELECT cursor FROM ${this.schemaSql}.subscriptions WHERE name = $1`,
      [this.subscription],
    );
    return r.rows[0]?.cursor ?? undefined;
  }

  /**
   * Writes the batch and moves the cursor from `from` to `to`, in one
   * transaction. Returns false (and writes nothing) if another process moved
   * the cursor first; the caller re-reads it and fetches again.
   */
  async ingest(
    db: Database,
    rows: readonly InboxInsert[],
    from: string | undefined,
    to: string,
    handleOnIngest?: HandleOnIngest,
  ): Promise<{ moved: boolean; pending: number }> {
    return db.transaction(async (tx) => {
      const moved = await queryPrepared(
        tx,
        `UPDATE ${this.schemaSql}.subscriptions
         SET cursor = $3, updated_at = now(), seal = ${this.schemaSql}.cursor_seal(name, $3)
         WHERE name = $1 AND cursor IS NOT DISTINCT FROM $2`,
        [this.subscription, from ?? null, to],
      );
      if (moved.rowCount !== 1) return { moved: false, pending: 0 };
      if (rows.length === 0) return { moved: true, pending: 0 };
      if (handleOnIngest) {
        const handled = await this.tryHandlingOnIngest(tx, rows, handleOnIngest);
        if (handled !== undefined) return { moved: true, pending: rows.length - handled };
      }
      await this.insertRows(tx, rows);
      return { moved: true, pending: rows.length };
    });
  }

  /**
   * The fast path: the batch's events whose key has nothing waiting are
   * handled here, in order, and stored as handled — one transaction and one
   * row per event, no claim and no second write. Only events new to the
   * inbox, and of keys with no pending (or, with `block-key`, dead) entry —
   * in the inbox or earlier in this batch — qualify, so per-key order and
   * deduplication are the inbox's as always; the subscription row locked by
   * the cursor update keeps other processes of this subscription out.
   *
   * All or nothing: if a handler throws, or the batch cannot be stored, the
   * savepoint undoes every handler's effect and undefined tells the caller to
   * store the batch for the worker loops (which retry and dead-letter as
   * usual). Returns how many events were handled.
   */
  private async tryHandlingOnIngest(
    tx: Executor,
    rows: readonly InboxInsert[],
    handle: HandleOnIngest,
  ): Promise<number | undefined> {
    const fresh = rows.filter((r) => r.status === 'pending' && r.id !== null);
    if (fresh.length === 0) return undefined;
    const there = await queryPrepared<{ seen: string[]; waiting: string[] }>(
      tx,
      this.alreadyThereSql,
      [this.subscription, fresh.map((r) => r.id), [...new Set(fresh.map((r) => r.key))]],
    );
    const seen = new Set(there.rows[0]?.seen ?? []);
    const blocked = new Set(there.rows[0]?.waiting ?? []);
    const now: InboxEntry[] = [];
    const stored = rows.map((row) => {
      const ready =
        row.status === 'pending' && row.id !== null && !seen.has(row.id) && !blocked.has(row.key);
      if (!ready) {
        // What stays behind blocks the later events of its key (a duplicate is already stored).
        if (row.status === 'pending' ? !seen.has(row.id ?? '') : this.deadBlocks)
          blocked.add(row.key);
        return row;
      }
      now.push(toEntry(row));
      // The same event twice in one batch (a feed that repeats itself) is handled once.
      seen.add(row.id as string);
      return { ...row, status: 'handled' as const };
    });
    if (now.length === 0) return undefined;
    await tx.query('SAVEPOINT baton_on_ingest');
    try {
      await handle(tx, now);
      await queryPrepared(tx, this.insertSql, [this.subscription, JSON.stringify(stored)]);
      await tx.query('RELEASE SAVEPOINT baton_on_ingest');
      return now.length;
    } catch {
      // The batch goes the careful way: stored pending, handled by the worker loops.
      await tx.query('ROLLBACK TO SAVEPOINT baton_on_ingest');
      return undefined;
    }
  }

  /**
   * Inserts rows; if PostgreSQL refuses the batch for its data (SQLSTATE class
   * 22, e.g. a value jsonb cannot hold), inserts row by row and keeps each
   * refused one as a dead letter with the database's reason — one bad event
   * never blocks the feed.
   */
  private async insertRows(tx: Executor, rows: readonly InboxInsert[]): Promise<void> {
    await tx.query('SAVEPOINT baton_ingest');
    try {
      await queryPrepared(tx, this.insertSql, [this.subscription, JSON.stringify(rows)]);
      await tx.query('RELEASE SAVEPOINT baton_ingest');
      return;
    } catch (error) {
      if (!isDataError(error)) throw error;
      await tx.query('ROLLBACK TO SAVEPOINT baton_ingest');
    }
    for (const row of rows) {
      try {
        await tx.query('SAVEPOINT baton_ingest_row');
        await queryPrepared(tx, this.insertSql, [this.subscription, JSON.stringify([row])]);
        await tx.query('RELEASE SAVEPOINT baton_ingest_row');
      } catch (error) {
        if (!isDataError(error)) throw error;
        await tx.query('ROLLBACK TO SAVEPOINT baton_ingest_row');
        const refused = deadOnArrival(
          row.position,
          JSON.stringify(row),
          `database refused the event: ${(error as Error).message}`,
        );
        await queryPrepared(tx, this.insertSql, [this.subscription, JSON.stringify([refused])]);
      }
    }
  }

  async claim(tx: Executor, limit: number): Promise<InboxEntry[]> {
    const result = await queryPrepared<ClaimRow>(tx, this.claimSql, [this.subscription, limit]);
    return result.rows.map((r) => ({
      inboxId: r.inbox_id,
      attempts: r.attempts,
      event: toBatonEvent(r),
    }));
  }

  async markHandled(tx: Executor, inboxIds: readonly string[]): Promise<void> {
    if (inboxIds.length === 0) return;
    await queryPrepared(
      tx,
      `UPDATE ${this.schemaSql}.inbox SET status = 'handled', handled_at = now(), last_error = NULL,
         seal = ${this.schemaSql}.inbox_seal(subscription, event_id, type, key, version, payload, headers, 'handled')
       WHERE id = ANY($1::bigint[])`,
      [inboxIds],
    );
  }

  /** Records a failed attempt; `dead` when attempts are exhausted or the failure is terminal. */
  async markFailed(
    tx: Executor,
    inboxId: string,
    error: string,
    dead: boolean,
    retryInMs: number,
  ): Promise<void> {
    await queryPrepared(
      tx,
      `UPDATE ${this.schemaSql}.inbox
       SET attempts = attempts + 1, last_error = $2,
           status = CASE WHEN $3 THEN 'dead' ELSE 'pending' END,
           seal = ${this.schemaSql}.inbox_seal(subscription, event_id, type, key, version, payload, headers,
             CASE WHEN $3 THEN 'dead' ELSE 'pending' END),
           next_attempt_at = now() + make_interval(secs => $4::double precision / 1000)
       WHERE id = $1 AND status = 'pending'`,
      [inboxId, error.slice(0, 8000), dead, retryInMs],
    );
  }

  /** Deletes handled entries older than the retention (the dedup window for push transports). */
  async prune(db: Executor, retentionMs: number): Promise<number> {
    const r = await queryPrepared(
      db,
      `DELETE FROM ${this.schemaSql}.inbox WHERE subscription = $1 AND status = 'handled'
       AND handled_at < now() - make_interval(secs => $2::double precision / 1000)`,
      [this.subscription, retentionMs],
    );
    return r.rowCount ?? 0;
  }
}

interface ClaimRow extends EventColumns {
  inbox_id: string;
  attempts: number;
}

/** Turns what a source delivered into inbox rows; unknown types are dead on arrival. */
export function toInboxRows(
  items: readonly IncomingItem[],
  handledTypes: ReadonlySet<string>,
): InboxInsert[] {
  return items.map((item) => {
    if (!item.event) return deadOnArrival(item.position, item.raw, item.problem);
    const e = item.event;
    const known = handledTypes.has(e.type);
    return {
      position: item.position,
      id: e.id,
      type: e.type,
      key: e.key,
      version: e.version,
      payload: e.payload,
      headers: e.headers,
      occurredAt: e.occurredAt,
      source: e.source,
      raw: null,
      status: known ? 'pending' : 'dead',
      error: known
        ? null
        : `no handler for event type "${e.type}" (this subscription handles ${[...handledTypes].join(', ') || 'nothing'}); subscribe to it, then retry this dead letter`,
    };
  });
}

/**
 * A dead letter for input that could not be decoded. It gets a key of its
 * own, so it blocks no real key; the raw text is kept (NUL made visible,
 * since PostgreSQL text cannot hold it).
 */
function deadOnArrival(position: string, raw: string, problem: string): InboxInsert {
  return {
    position,
    id: null,
    type: null,
    key: `!undecodable:${position}`,
    version: null,
    payload: null,
    headers: null,
    occurredAt: null,
    source: null,
    raw: raw.replaceAll('\u0000', '\\u0000'),
    status: 'dead',
    error: problem,
  };
}

function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && code.startsWith('22');
}
