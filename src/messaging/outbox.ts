import { InvalidInputError, PayloadTooLargeError } from '../core/errors.ts';
import type { BatonEvent, EventInput } from '../core/event.ts';
import { type EventSchemas, validatePayload } from '../core/event-schemas.ts';
import { findUnsafeJson } from '../core/json-safety.ts';
import { inSpan, SpanKind, traceHeaders } from '../core/tracing.ts';
import { uuidv7 } from '../core/uuid-v7.ts';
import type { Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';

export interface OutboxOptions {
  /** Quoted schema name (see `schemaIdent`). */
  schemaSql: string;
  /** This service's name, stamped on every event as `source`. */
  source: string;
  schemas?: EventSchemas;
  /** Refuse event types without a registered schema. */
  strictTypes: boolean;
  maxPayloadBytes: number;
  /** NOTIFY the relay on commit (otherwise it relies on polling). */
  notifyChannel: string | undefined;
  /**
   * At most one publishing transaction per this many milliseconds carries the
   * NOTIFY (0: every one). See `Outbox` for why.
   */
  notifyMinIntervalMs: number;
}

const EVENT_TYPE = /^[A-Za-z][A-Za-z0-9_.:-]{0,199}$/;
const MAX_KEY_LENGTH = 512;
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
const MAX_HEADERS_BYTES = 8 * 1024;

/**
 * Writes events into the outbox inside the caller's transaction.
 *
 * Guarantee: the events commit or roll back with the caller's transaction.
 * Each key's version is taken under a row lock on that key's counter, so a
 * second transaction publishing the same key waits until the first commits:
 * versions of a key commit in order. Everything is validated before anything
 * is written; an invalid event throws a typed error and writes nothing.
 *
 * Waking the relay: PostgreSQL serialises the commits of all transactions
 * that NOTIFY (a database-wide lock held through the commit's WAL flush), so
 * a NOTIFY in every publishing transaction would take group commit away from
 * the caller's busy tables. Instead at most one publish per
 * `notifyMinIntervalMs` carries it; the relay, once woken, keeps polling at a
 * short interval while events keep arriving (and briefly after), which finds
 * the transactions that did not notify. A transaction that commits long after
 * it published, or whose notifying neighbour rolled back, is found by the
 * relay's regular poll.
 */
export class Outbox {
  private readonly insertSql: { notify: string; quiet: string };
  private readonly insertOneSql: { notify: string; quiet: string };
  private lastNotifyAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: OutboxOptions) {
    const channel = options.notifyChannel?.replaceAll("'", "''");
    const notifyColumn =
      channel === undefined ? '' : `, (SELECT pg_notify('${channel}', '')) IS NULL AS notified`;
    this.insertSql = {
      notify: this.batchInsertSql(notifyColumn),
      quiet: this.batchInsertSql(''),
    };
    this.insertOneSql = {
      notify: this.oneInsertSql(notifyColumn),
      quiet: this.oneInsertSql(''),
    };
  }

  private batchInsertSql(notify: string): string {
    const s = this.options.schemaSql;
    // One statement: count events per key, bump each key's counter by that
    // count (locking it, in key order so concurrent multi-key publishers
    // cannot deadlock), and number the batch's events of each key after it.
    return `
      WITH input AS (
        SELECT e.value AS e, e.ordinality AS ord
        FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e
      ), counts AS (
        SELECT e->>'key' AS key, count(*) AS n FROM input GROUP BY 1
      ), bumped AS (
        INSERT INTO ${s}.stream_versions AS sv (stream_key, version, seal)
        SELECT key, n, ${s}.counter_seal(key, n) FROM counts ORDER BY key
        ON CONFLICT (stream_key) DO UPDATE SET version = sv.version + excluded.version,
          seal = ${s}.counter_seal(sv.stream_key, sv.version + excluded.version)
        RETURNING stream_key, version
      ), numbered AS (
        SELECT (i.e->>'id')::uuid AS event_id, i.e->>'type' AS type, i.e->>'key' AS key,
               b.version - c.n + row_number() OVER (PARTITION BY i.e->>'key' ORDER BY i.ord) AS version,
               i.e->'payload' AS payload, i.e->'headers' AS headers,
               (i.e->>'occurredAt')::timestamptz AS occurred_at, i.ord
        FROM input i
        JOIN bumped b ON b.stream_key = i.e->>'key'
        JOIN counts c ON c.key = i.e->>'key'
      )
      INSERT INTO ${s}.outbox (event_id, type, key, version, payload, headers, occurred_at, source, seal)
      SELECT event_id, type, key, version, payload, headers, occurred_at, $2,
             ${s}.outbox_seal(event_id, type, key, version, payload, headers, $2)
      FROM numbered ORDER BY ord
      RETURNING event_id::text AS id, version${notify}`;
  }

  /**
   * The common case, one event: the same effect without the batch machinery
   * (no JSON array to unpack, no grouping), so it parses and plans cheaply.
   */
  private oneInsertSql(notify: string): string {
    const s = this.options.schemaSql;
    return `
      WITH bumped AS (
        INSERT INTO ${s}.stream_versions AS sv (stream_key, version, seal)
        VALUES ($3, 1, ${s}.counter_seal($3, 1))
        ON CONFLICT (stream_key) DO UPDATE SET version = sv.version + 1,
          seal = ${s}.counter_seal(sv.stream_key, sv.version + 1)
        RETURNING version
      )
      INSERT INTO ${s}.outbox (event_id, type, key, version, payload, headers, occurred_at, source, seal)
      SELECT $1::uuid, $2, $3, b.version, $4::jsonb, $5::jsonb, $6::timestamptz, $7,
             ${s}.outbox_seal($1::uuid, $2, $3, b.version, $4::jsonb, $5::jsonb, $7)
      FROM bumped b
      RETURNING event_id::text AS id, version${notify}`;
  }

  async publish(tx: Executor, input: EventInput | readonly EventInput[]): Promise<BatonEvent[]> {
    const inputs = Array.isArray(input) ? input : [input as EventInput];
    if (inputs.length === 0) return [];
    const prepared = await Promise.all(inputs.map((e, i) => this.prepare(e, i)));
    const first = prepared[0] as PreparedEvent;
    return inSpan(
      `send ${prepared.length === 1 ? first.type : 'events'}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          'messaging.system': 'baton',
          'messaging.operation.type': 'send',
          'messaging.destination.name': this.options.source,
          'messaging.batch.message_count': prepared.length,
          ...(prepared.length === 1 ? { 'messaging.message.id': first.id } : {}),
        },
      },
      // Each event carries the trace it was published in (unless it names its own).
      async () => this.insert(tx, withTrace(prepared, traceHeaders())),
    );
  }

  private async insert(tx: Executor, events: PreparedEvent[]): Promise<BatonEvent[]> {
    const one = events.length === 1 ? events[0] : undefined;
    const mode = this.takeNotify() ? 'notify' : 'quiet';
    const result = one
      ? await queryPrepared<{ id: string; version: string }>(tx, this.insertOneSql[mode], [
          one.id,
          one.type,
          one.key,
          JSON.stringify(one.payload),
          JSON.stringify(one.headers),
          one.occurredAt,
          this.options.source,
        ])
      : await queryPrepared<{ id: string; version: string }>(tx, this.insertSql[mode], [
          JSON.stringify(events),
          this.options.source,
        ]);
    const versions = new Map(result.rows.map((r) => [r.id, Number(r.version)]));
    return events.map((e) => ({
      ...e,
      version: versions.get(e.id) ?? 0,
      source: this.options.source,
    }));
  }

  /** Whether this publish carries the NOTIFY (the next ones within the interval then do not). */
  private takeNotify(): boolean {
    if (this.options.notifyChannel === undefined) return false;
    const now = Date.now();
    if (now - this.lastNotifyAt < this.options.notifyMinIntervalMs) return false;
    this.lastNotifyAt = now;
    return true;
  }

  private async prepare(
    input: EventInput,
    index: number,
  ): Promise<Omit<BatonEvent, 'version' | 'source'>> {
    const where = `event #${index}`;
    if (typeof input !== 'object' || input === null) {
      throw new InvalidInputError(`${where} is not an object: pass { type, key, payload }.`);
    }
    const { type, key } = input;
    if (typeof type !== 'string' || !EVENT_TYPE.test(type)) {
      throw new InvalidInputError(
        `${where}: type ${JSON.stringify(type)} is not valid: use 1–200 letters, digits, '.', '_', ':' or '-', starting with a letter.`,
      );
    }
    if (this.options.strictTypes && !this.options.schemas?.[type]) {
      throw new InvalidInputError(
        `${where}: event type "${type}" has no registered schema and strictTypes is on. Register a schema for it.`,
      );
    }
    // NUL and unpaired surrogates are checked here, not left to PostgreSQL: a
    // database error would abort the caller's transaction.
    if (
      typeof key !== 'string' ||
      key.length === 0 ||
      key.length > MAX_KEY_LENGTH ||
      findUnsafeJson(key) !== undefined
    ) {
      throw new InvalidInputError(
        `${where} (${type}): key must be a non-empty string of at most ${MAX_KEY_LENGTH} characters without NUL or unpaired surrogates (got ${describe(key)}).`,
      );
    }
    if (key.startsWith('baton.entity:')) {
      throw new InvalidInputError(
        `${where} (${type}): keys starting with "baton.entity:" are reserved for entity state streams.`,
      );
    }
    const payload = await validatePayload(this.options.schemas, type, input.payload);
    const unsafe = findUnsafeJson(payload);
    if (unsafe)
      throw new InvalidInputError(`${where} (${type}): payload is not safe JSON: ${unsafe}.`);
    const bytes = Buffer.byteLength(JSON.stringify(payload ?? null));
    if (bytes > this.options.maxPayloadBytes) {
      throw new PayloadTooLargeError(type, bytes, this.options.maxPayloadBytes);
    }
    const occurredAt = input.occurredAt ?? new Date();
    if (!(occurredAt instanceof Date) || !isStorableDate(occurredAt)) {
      throw new InvalidInputError(
        `${where} (${type}): occurredAt must be a valid Date in the years 1 to 9999.`,
      );
    }
    return {
      id: uuidv7(),
      type,
      key,
      payload: payload ?? null,
      headers: checkHeaders(input.headers, where),
      occurredAt: occurredAt.toISOString(),
    };
  }
}

type PreparedEvent = Awaited<ReturnType<Outbox['prepare']>>;

/** Adds the trace context to events that carry none of their own. */
function withTrace(events: PreparedEvent[], trace: Record<string, string>): PreparedEvent[] {
  if (trace.traceparent === undefined) return events;
  return events.map((e) =>
    e.headers.traceparent === undefined ? { ...e, headers: { ...e.headers, ...trace } } : e,
  );
}

function checkHeaders(
  headers: Record<string, string> | undefined,
  where: string,
): Record<string, string> {
  if (headers === undefined) return {};
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) {
    throw new InvalidInputError(`${where}: headers must be an object of strings.`);
  }
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value !== 'string' || value.includes('\u0000') || name.includes('\u0000')) {
      throw new InvalidInputError(`${where}: header "${name}" must be a string without NUL.`);
    }
    // Names consumers refuse (prototype pollution) and text jsonb cannot hold.
    const unsafe = findUnsafeJson({ [name.toLowerCase()]: value });
    if (unsafe) {
      throw new InvalidInputError(`${where}: header "${name}" is not allowed: ${unsafe}.`);
    }
    out[name.toLowerCase()] = value;
  }
  const traceparent = out.traceparent;
  if (traceparent !== undefined && !TRACEPARENT.test(traceparent)) {
    throw new InvalidInputError(
      `${where}: traceparent "${traceparent}" is not a W3C trace context header (version-traceid-parentid-flags).`,
    );
  }
  if (Buffer.byteLength(JSON.stringify(out)) > MAX_HEADERS_BYTES) {
    throw new InvalidInputError(`${where}: headers exceed ${MAX_HEADERS_BYTES} bytes.`);
  }
  return out;
}

/** Whether PostgreSQL's timestamptz can read the date's ISO form (4-digit years only). */
function isStorableDate(date: Date): boolean {
  const year = date.getUTCFullYear();
  return year >= 1 && year <= 9999;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `a string of ${value.length} characters`;
  return value === null ? 'null' : typeof value;
}
