import { CursorExpiredError } from '../../core/errors.ts';
import { check, withDefaults } from '../../core/options.ts';
import type { ClientAuth } from '../../http/auth.ts';
import { failure, PeerError, signedClient } from '../../http/signed-client.ts';
import type { EventSource, FetchedBatch, FetchRequest, IncomingItem } from '../transport.ts';
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

/** A feed source's options, defaults applied key by key, checked, frozen. */
export function compileFeedSourceOptions(
  options: HttpFeedSourceOptions,
): Readonly<Required<HttpFeedSourceOptions>> {
  const o = withDefaults<Required<HttpFeedSourceOptions>>(options, {
    ...options,
    maxEventBytes: 1024 * 1024,
    maxResponseBytes: 64 * 1024 * 1024,
    requestTimeoutMs: 10_000,
  });
  const part = `feed source ${options.name}`;
  check.integer(part, 'maxEventBytes', o.maxEventBytes);
  check.integer(part, 'maxResponseBytes', o.maxResponseBytes);
  check.ms(part, 'requestTimeoutMs', o.requestTimeoutMs);
  return Object.freeze(o);
}

/**
 * Reads a producer's HTTP feed. Each fetch is one signed GET; the returned
 * cursor is the feed position to store with the inbox rows.
 *
 * Failure semantics (the signed client's `PeerError`s): network errors,
 * timeouts and 5xx answers are retryable; 401/400 are not (fix the
 * configuration); an answer over `maxResponseBytes` is cut off there and
 * refused; 410 throws `CursorExpiredError` with the producer's oldest
 * retained position. A malformed line never
 * throws: it comes back as an item with a `problem`, to be kept as a dead
 * letter.
 */
export function httpFeedSource(given: HttpFeedSourceOptions): EventSource {
  const options = compileFeedSourceOptions(given);
  const { maxEventBytes, requestTimeoutMs } = options;
  const client = signedClient({
    name: `feed ${options.name}`,
    peer: options.name,
    url: options.url,
    auth: options.auth,
    maxResponseBytes: options.maxResponseBytes,
  });

  async function fetchBatch(request: FetchRequest): Promise<FetchedBatch> {
    const after = request.cursor ?? '0';
    const query = new URLSearchParams({
      after,
      limit: String(request.limit),
      wait: String(request.waitMs),
    });
    if (request.types.length > 0) query.set('types', request.types.join(','));
    const answer = await client.request('GET', `events?${query}`, {
      timeoutMs: request.waitMs + requestTimeoutMs,
      signal: request.signal,
    });
    const body = answer.body;
    if (answer.status === 410)
      throw new CursorExpiredError(after, oldestRetained(body.toString('utf8')));
    if (answer.status !== 200) {
      const text = body.toString('utf8');
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {}
      throw failure(`feed ${options.name}`, 'events', answer.status, parsed, text);
    }
    // Split on the newline byte (it never occurs inside a multi-byte UTF-8
    // sequence) and decode each line strictly: invalid UTF-8 in one event
    // makes that event a dead letter instead of being silently replaced.
    const lines = splitLines(body);
    let header: { next: string };
    try {
      header = decodeFeedHeader(lines[0] === undefined ? undefined : strictUtf8.decode(lines[0]));
    } catch (error) {
      throw new PeerError(
        'BATON_PEER_PROTOCOL',
        `feed ${options.name} sent a malformed response: ${(error as Error).message}`,
        answer.status,
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

/** The producer's oldest retained position from a 410 body, if it gave a well-formed one. */
function oldestRetained(text: string): string | undefined {
  try {
    const value = (JSON.parse(text) as { error?: { oldestRetained?: unknown } }).error
      ?.oldestRetained;
    if (typeof value === 'string' && /^\d{1,18}$/.test(value)) return value;
  } catch {}
  return undefined;
}
