import { CursorExpiredError, InvalidInputError, TransportError } from '../../errors.ts';
import type { EventSource, FetchedBatch, FetchRequest, IncomingItem } from '../transport.ts';
import { authHeaders, type ClientAuth } from './auth.ts';
import { decodeEventLine, decodeFeedHeader } from './wire-format.ts';

export interface HttpFeedSourceOptions {
  /** Name of the producing service (recorded with the subscription). */
  name: string;
  /** Base URL of the producer's feed, e.g. `http://customers:8080/baton`. */
  url: string;
  auth: ClientAuth;
  /** Events larger than this become dead letters instead of being handled. */
  maxEventBytes?: number;
  /** Whole responses larger than this are refused (retry with a smaller batch). */
  maxResponseBytes?: number;
  /** Extra time allowed beyond the long-poll wait before a request counts as failed. */
  requestTimeoutMs?: number;
}

/**
 * Reads a producer's HTTP feed. Each fetch is one signed GET; the returned
 * cursor is the feed position to store with the inbox rows.
 *
 * Failure semantics: network errors, timeouts and 5xx answers throw a
 * retryable `TransportError`; 401/400 throw a non-retryable one (fix the
 * configuration); 410 throws `CursorExpiredError` with the producer's oldest
 * retained position. A malformed line never
 * throws: it comes back as an item with a `problem`, to be kept as a dead
 * letter.
 */
export function httpFeedSource(options: HttpFeedSourceOptions): EventSource {
  let base: URL;
  try {
    base = new URL(options.url.replace(/\/?$/, '/'));
  } catch {
    throw new InvalidInputError(`feed url "${options.url}" is not a valid URL`);
  }
  const maxEventBytes = options.maxEventBytes ?? 1024 * 1024;
  const maxResponseBytes = options.maxResponseBytes ?? 64 * 1024 * 1024;
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;

  async function fetchBatch(request: FetchRequest): Promise<FetchedBatch> {
    const after = request.cursor ?? '0';
    const url = new URL('events', base);
    url.searchParams.set('after', after);
    url.searchParams.set('limit', String(request.limit));
    url.searchParams.set('wait', String(request.waitMs));
    if (request.types.length > 0) url.searchParams.set('types', request.types.join(','));
    const target = `${url.pathname}${url.search}`;
    const timeout = AbortSignal.timeout(request.waitMs + requestTimeoutMs);
    let response: Response;
    try {
      response = await fetch(url, {
        headers: authHeaders(options.auth, { method: 'GET', target }),
        signal: AbortSignal.any([request.signal, timeout]),
      });
    } catch (error) {
      throw new TransportError(
        `feed ${options.name} at ${base.origin} did not answer: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    const body = await readLimited(response, maxResponseBytes);
    if (response.status === 410) {
      throw new CursorExpiredError(after, oldestRetained(body.toString('utf8')));
    }
    if (response.status !== 200) {
      const retryable = response.status >= 500 || response.status === 429;
      throw new TransportError(
        `feed ${options.name} answered ${response.status}: ${safeMessage(body.toString('utf8'))}`,
        { retryable },
      );
    }
    // Split on the newline byte (it never occurs inside a multi-byte UTF-8
    // sequence) and decode each line strictly: invalid UTF-8 in one event
    // makes that event a dead letter instead of being silently replaced.
    const lines = splitLines(body);
    let header: { next: string };
    try {
      header = decodeFeedHeader(lines[0] === undefined ? undefined : strictUtf8.decode(lines[0]));
    } catch (error) {
      throw new TransportError(
        `feed ${options.name} sent a malformed response: ${(error as Error).message}`,
      );
    }
    const items: IncomingItem[] = [];
    for (let i = 1; i < lines.length; i++) {
      const bytes = lines[i] as Buffer;
      if (bytes.length === 0) continue;
      const position = `${after}+line${i}`;
      let line: string;
      try {
        line = strictUtf8.decode(bytes);
      } catch {
        items.push({
          position,
          problem: 'event line is not valid UTF-8',
          raw: bytes.toString('utf8'),
        });
        continue;
      }
      items.push(decodeEventLine(line, position, maxEventBytes));
    }
    return { items, cursor: header.next };
  }

  return { name: options.name, fetch: fetchBatch };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function splitLines(body: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  for (let i = body.indexOf(0x0a); i !== -1; i = body.indexOf(0x0a, start)) {
    lines.push(body.subarray(start, i));
    start = i + 1;
  }
  lines.push(body.subarray(start));
  return lines;
}

async function readLimited(response: Response, limit: number): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > limit) {
    await response.body?.cancel();
    throw new TransportError(
      `feed response of ${declared} bytes is over the limit of ${limit}; lower the batch size`,
    );
  }
  const body = Buffer.from(await response.arrayBuffer());
  if (body.length > limit)
    throw new TransportError(`feed response is over the limit of ${limit} bytes`);
  return body;
}

/** The producer's oldest retained position from a 410 body, if it gave a well-formed one. */
function oldestRetained(text: string): string | undefined {
  try {
    const value = (JSON.parse(text) as { error?: { oldestRetained?: unknown } }).error
      ?.oldestRetained;
    if (typeof value === 'string' && /^\d{1,18}$/.test(value)) return value;
  } catch {}
  return undefined;
}

function safeMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown } };
    if (typeof parsed.error?.message === 'string') return parsed.error.message.slice(0, 500);
  } catch {}
  return text.slice(0, 200);
}
