import type { Telemetry } from '../../core/telemetry.ts';
import type { Database } from '../../db/executor.ts';
import { queryPrepared } from '../../db/prepared.ts';
import type { ServerAuth } from '../../http/auth.ts';
import { errorResponse, type HttpResponseLike } from '../../http/http-types.ts';
import { DatabaseNonces } from '../../http/nonce-store.ts';
import {
  createServiceHandler,
  type Route,
  type ServiceHandler,
} from '../../http/service-handler.ts';
import { FEED_CONTENT_TYPE } from './wire-format.ts';

export interface FeedHandlerOptions {
  db: Database;
  schemaSql: string;
  /** Channel the relay NOTIFYs after sequencing. */
  feedChannel: string;
  auth: ServerAuth;
  /** Path prefix, e.g. `/baton` → `GET /baton/events`. */
  basePath?: string;
  maxLimit?: number;
  maxWaitMs?: number;
  /**
   * Long-polls held at once (default 1,000); past it a request that would
   * wait is answered 503 with Retry-After (the consumer backs off).
   */
  maxWaiters?: number;
  /** Clock for signature windows (injectable for tests). */
  now?: () => number;
  /** The services that may read the feed (needs per-service keys); default any authenticated caller. */
  callers?: readonly string[];
  /** Where answers are counted (the service's metrics). */
  telemetry?: Telemetry;
}

export type FeedHandler = ServiceHandler;

const CURSOR = /^\d{1,18}$/;
interface ReadRow {
  last: string;
  pruned: string;
  type: string | null;
  line: string | null;
  seq: string | null;
}

const TYPE_LIST = /^[A-Za-z][A-Za-z0-9_.:-]{0,199}(,[A-Za-z][A-Za-z0-9_.:-]{0,199}){0,99}$/;

/**
 * Serves this service's relayed events as an ordered, authenticated feed:
 *
 *   GET {basePath}/events?after=<seq>&limit=<n>&wait=<ms>&types=a,b
 *
 * Answers NDJSON (see wire-format.ts): events with `seq > after` in `seq`
 * order, at most `limit`, only of the listed types (others are skipped but
 * the returned cursor moves past them). With `wait`, an empty answer is held
 * until the relay announces new events or the wait ends (long-poll).
 *
 * 401 for any request that is not authenticated (no data), 400 for bad
 * parameters, 410 when `after` lies before the oldest retained position
 * (`error.oldestRetained`: the earliest cursor served in full), 409 when it
 * lies beyond the newest event (the feed was reset).
 */
export function createFeedRoute(options: Omit<FeedHandlerOptions, 'auth' | 'basePath' | 'now'>): {
  route: Route;
  close(): Promise<void>;
} {
  const maxLimit = options.maxLimit ?? 1000;
  const maxWaitMs = options.maxWaitMs ?? 30_000;
  const maxWaiters = options.maxWaiters ?? 1000;
  const s = options.schemaSql;
  const news = new FeedNews(options.db, s, options.feedChannel);

  // One statement, so the pruning watermark and the rows come from one
  // snapshot: a prune committing in between can never turn into a silent gap.
  const readSql = `
    SELECT st.last_seq::text AS last, st.pruned_through::text AS pruned, e.type, e.line, e.seq
    FROM ${s}.relay_state st
    LEFT JOIN LATERAL (
      SELECT type, o.seq AS position, seq::text AS seq, (jsonb_build_object('seq', seq, 'id', event_id, 'type', type,
        'key', key, 'version', version, 'payload', payload, 'headers', headers,
        'occurredAt', occurred_at, 'source', source))::text AS line
      -- o.seq, not seq: a bare name in ORDER BY means the text output column,
      -- which sorts '10' before '9' and let the cursor jump past unread events.
      FROM ${s}.outbox o WHERE o.seq > $1 ORDER BY o.seq LIMIT $2
    ) e ON true
    ORDER BY e.position`;

  async function readEvents(after: string, limit: number, types: Set<string> | undefined) {
    const result = await queryPrepared<ReadRow>(options.db, readSql, [after, limit]);
    const first = result.rows[0];
    const last = first?.last ?? '0';
    news.saw(BigInt(last));
    const pruned = first?.pruned ?? '0';
    if (BigInt(after) < BigInt(pruned)) {
      // The position as a value too: the consumer records it for the operator's reset.
      return errorResponse(
        410,
        'BATON_CURSOR_EXPIRED',
        `cursor ${after} lies before the oldest retained position (${pruned}): the events after ${after} up to ${pruned} were pruned. Raise the producer's outbox retention; on the consumer, move the subscription's cursor (\`baton consumers reset <subscription> --to-oldest\`) and reconcile.`,
        { oldestRetained: pruned },
      );
    }
    if (BigInt(after) > BigInt(last)) {
      return errorResponse(
        409,
        'BATON_CURSOR_AHEAD',
        `cursor ${after} is beyond the newest event of this feed (position ${last}): the producer's outbox was reset or this is another feed. Check the subscription's source.`,
      );
    }
    const rows = result.rows.filter(
      (r): r is ReadRow & { line: string; seq: string; type: string } => r.seq !== null,
    );
    const lines = rows.filter((r) => !types || types.has(r.type)).map((r) => r.line);
    const next = rows.at(-1)?.seq ?? after;
    return { lines, next, scanned: rows.length };
  }

  async function handleEvents(url: URL, signal?: AbortSignal): Promise<HttpResponseLike> {
    const after = url.searchParams.get('after') ?? '0';
    if (!CURSOR.test(after))
      return errorResponse(400, 'BATON_BAD_REQUEST', '"after" must be a feed position (digits)');
    const limitText = url.searchParams.get('limit') ?? '100';
    // Digits only: Number() would also take 1e3, 0x10, " 5" and 5.0.
    const limit = /^\d{1,7}$/.test(limitText) ? Number(limitText) : Number.NaN;
    if (!Number.isInteger(limit) || limit < 1 || limit > maxLimit) {
      return errorResponse(
        400,
        'BATON_BAD_REQUEST',
        `"limit" must be an integer from 1 to ${maxLimit}`,
      );
    }
    const waitText = url.searchParams.get('wait') ?? '0';
    const wait = /^\d{1,9}$/.test(waitText) ? Number(waitText) : Number.NaN;
    if (!Number.isInteger(wait) || wait < 0 || wait > maxWaitMs) {
      return errorResponse(
        400,
        'BATON_BAD_REQUEST',
        `"wait" must be milliseconds from 0 to ${maxWaitMs}`,
      );
    }
    const typesParam = url.searchParams.get('types');
    if (typesParam !== null && typesParam !== '' && !TYPE_LIST.test(typesParam)) {
      return errorResponse(
        400,
        'BATON_BAD_REQUEST',
        '"types" must be a comma-separated list of event types',
      );
    }
    const types = typesParam ? new Set(typesParam.split(',')) : undefined;
    const deadline = Date.now() + wait;
    for (;;) {
      const result = await readEvents(after, limit, types);
      if ('status' in result) return result;
      const remaining = deadline - Date.now();
      if (result.scanned > 0 || remaining <= 0 || signal?.aborted) {
        const header = JSON.stringify({ next: result.next, count: result.lines.length });
        return {
          status: 200,
          headers: { 'content-type': FEED_CONTENT_TYPE, 'cache-control': 'no-store' },
          body: [header, ...result.lines].join('\n'),
        };
      }
      // Nothing yet: wait until the feed's head moves past `after` (one shared read per
      // wake-up for all waiters, not one per waiter) or the wait ends.
      if (news.waiting >= maxWaiters)
        return {
          ...errorResponse(
            503,
            'BATON_BUSY',
            `${maxWaiters} long-polls are held already; retry in a second`,
          ),
          headers: { 'retry-after': '1' },
        };
      await news.waitPast(BigInt(after), remaining, signal);
    }
  }

  const route: Route = {
    method: 'GET',
    pattern: /^\/events$/,
    describe: '/events',
    handle: (_match, url, _request, signal) => handleEvents(url, signal),
  };
  return { route, close: () => news.close() };
}

/**
 * The feed's head (its newest position) for long-polls: waiters wait until
 * it moves past their cursor. It is read once per wake-up for all of them —
 * on the relay's NOTIFY, and every second while anyone waits (a NOTIFY can
 * be lost while the listening connection reconnects) — so 2,000 waiting
 * long-polls cost one small read a second, not 2,000.
 */
class FeedNews {
  private head = -1n;
  private readonly waiters = new Set<{ after: bigint; wake: () => void }>();
  private ticker: NodeJS.Timeout | undefined;
  private reading: Promise<void> | undefined;
  private unlisten: Promise<() => Promise<void>> | undefined;

  constructor(
    private readonly db: Database,
    private readonly schemaSql: string,
    private readonly channel: string,
  ) {}

  get waiting(): number {
    return this.waiters.size;
  }

  /** A read saw the head at `last`. */
  saw(last: bigint): void {
    if (last <= this.head) return;
    this.head = last;
    for (const w of [...this.waiters]) if (w.after < last) w.wake();
  }

  /** Resolves once the head is past `after`, after `ms`, or on abort. */
  waitPast(after: bigint, ms: number, signal?: AbortSignal): Promise<void> {
    if (this.head > after) return Promise.resolve();
    this.listen();
    return new Promise((resolve) => {
      const waiter = {
        after,
        wake: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          signal?.removeEventListener('abort', waiter.wake);
          if (this.waiters.size === 0) this.stopTicking();
          resolve();
        },
      };
      const timer = setTimeout(waiter.wake, ms);
      this.waiters.add(waiter);
      signal?.addEventListener('abort', waiter.wake, { once: true });
      this.ticker ??= setInterval(() => this.readHead(), 1_000);
    });
  }

  async close(): Promise<void> {
    for (const w of [...this.waiters]) w.wake();
    this.stopTicking();
    const stop = await this.unlisten?.catch(() => undefined);
    await stop?.();
  }

  private stopTicking(): void {
    clearInterval(this.ticker);
    this.ticker = undefined;
  }

  /** One read of the head at a time, whoever asks. */
  private readHead(): void {
    this.reading ??= queryPrepared<{ last: string }>(
      this.db,
      `SELECT last_seq::text AS last FROM ${this.schemaSql}.relay_state`,
      [],
    )
      .then((r) => this.saw(BigInt(r.rows[0]?.last ?? '0')))
      // The database away: waiters keep their deadline; the next tick tries again.
      .catch(() => {})
      .finally(() => {
        this.reading = undefined;
      });
  }

  private listen(): void {
    // A LISTEN that fails (the database restarting) must not become an unhandled
    // rejection — that ends the process. Waiters still end within their bound
    // (the ticker reads the head), and the next wait tries to LISTEN again.
    this.unlisten ??= this.db
      .listen(this.channel, () => this.readHead())
      .catch(() => {
        this.unlisten = undefined;
        return async () => {};
      });
  }
}

/** The feed alone behind its own authentication (see `createServiceHandler` for all endpoints). */
export function createFeedHandler(options: FeedHandlerOptions): FeedHandler {
  const feed = createFeedRoute(options);
  return createServiceHandler({
    auth: options.auth,
    basePath: options.basePath,
    now: options.now,
    nonces: new DatabaseNonces(options.db, options.schemaSql),
    telemetry: options.telemetry,
    routes: [options.callers ? { ...feed.route, callers: options.callers } : feed.route],
    onClose: feed.close,
  });
}
