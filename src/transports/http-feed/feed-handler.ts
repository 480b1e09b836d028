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
  /** Clock for signature windows (injectable for tests). */
  now?: () => number;
  /** The services that may read the feed (needs per-service keys); default any authenticated caller. */
  callers?: readonly string[];
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
  const s = options.schemaSql;
  const waiters = new Set<() => void>();
  let unlisten: Promise<() => Promise<void>> | undefined;

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

  function waitForRelay(ms: number, signal?: AbortSignal): Promise<void> {
    // A LISTEN that fails (the database restarting) must not become an unhandled
    // rejection — that ends the process. The wait below still ends within its
    // bound and the next long-poll tries to LISTEN again.
    unlisten ??= options.db
      .listen(options.feedChannel, () => {
        for (const w of [...waiters]) w();
      })
      .catch(() => {
        unlisten = undefined;
        return async () => {};
      });
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  async function readEvents(after: string, limit: number, types: Set<string> | undefined) {
    const result = await queryPrepared<ReadRow>(options.db, readSql, [after, limit]);
    const first = result.rows[0];
    const last = first?.last ?? '0';
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
      // Nothing yet: wait for the relay's NOTIFY (or re-check at least every second).
      await waitForRelay(Math.min(remaining, 1000), signal);
    }
  }

  const route: Route = {
    method: 'GET',
    pattern: /^\/events$/,
    describe: '/events',
    handle: (_match, url, _request, signal) => handleEvents(url, signal),
  };
  const close = async () => {
    for (const w of [...waiters]) w();
    const stop = await unlisten?.catch(() => undefined);
    await stop?.();
  };
  return { route, close };
}

/** The feed alone behind its own authentication (see `createServiceHandler` for all endpoints). */
export function createFeedHandler(options: FeedHandlerOptions): FeedHandler {
  const feed = createFeedRoute(options);
  return createServiceHandler({
    auth: options.auth,
    basePath: options.basePath,
    now: options.now,
    nonces: new DatabaseNonces(options.db, options.schemaSql),
    routes: [options.callers ? { ...feed.route, callers: options.callers } : feed.route],
    onClose: feed.close,
  });
}
