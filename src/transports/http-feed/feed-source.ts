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
 * configuration); 410 throws `CursorExpiredError`. A malformed line never
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
    const text = await readLimited(response, maxResponseBytes);
    if (response.status === 410) {
      throw new CursorExpiredError(after, safeMessage(text));
    }
    if (response.status !== 200) {
      const retryable = response.status >= 500 || response.status === 429;
      throw new TransportError(
        `feed ${options.name} answered ${response.status}: ${safeMessage(text)}`,
        { retryable },
      );
    }
    const lines = text.split('\n');
    let header: { next: string };
    try {
      header = decodeFeedHeader(lines[0]);
    } catch (error) {
      throw new TransportError(
        `feed ${options.name} sent a malformed response: ${(error as Error).message}`,
      );
    }
    const items: IncomingItem[] = [];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      if (line === '') continue;
      items.push(decodeEventLine(line, `${after}+line${i}`, maxEventBytes));
    }
    return { items, cursor: header.next };
  }

  return { name: options.name, fetch: fetchBatch };
}

async function readLimited(response: Response, limit: number): Promise<string> {
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > limit) {
    await response.body?.cancel();
    throw new TransportError(
      `feed response of ${declared} bytes is over the limit of ${limit}; lower the batch size`,
    );
  }
  const text = await response.text();
  if (text.length > limit)
    throw new TransportError(`feed response is over the limit of ${limit} bytes`);
  return text;
}

function safeMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown } };
    if (typeof parsed.error?.message === 'string') return parsed.error.message.slice(0, 500);
  } catch {}
  return text.slice(0, 200);
}
