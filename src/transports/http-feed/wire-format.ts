import type { BatonEvent } from '../../core/event.ts';
import { parseUntrustedJson } from '../../core/json-safety.ts';
import { isUuid } from '../../core/uuid-v7.ts';
import type { IncomingItem, SequencedEvent } from '../transport.ts';

/**
 * The feed's body is NDJSON: a first line `{"next":"<cursor>","count":n}`,
 * then one event per line (the envelope plus its `seq`). One line per event
 * means one bad event cannot spoil its neighbours: the consumer turns it into
 * a dead letter and carries on.
 */
export const FEED_CONTENT_TYPE = 'application/x-ndjson; charset=utf-8';

export interface FeedHeader {
  next: string;
  count: number;
}

export function decodeFeedHeader(line: string | undefined): FeedHeader {
  if (line === undefined) throw new SyntaxError('empty feed response: expected a header line');
  const header = JSON.parse(line) as Partial<FeedHeader>;
  if (typeof header.next !== 'string' || !/^\d{1,18}$/.test(header.next)) {
    throw new SyntaxError(`feed header has no valid "next" cursor: ${line.slice(0, 200)}`);
  }
  return { next: header.next, count: Number(header.count ?? 0) };
}

/** Decodes one event line from an untrusted peer; never throws. */
export function decodeEventLine(
  line: string,
  fallbackPosition: string,
  maxEventBytes: number,
): IncomingItem {
  const bad = (problem: string, position = fallbackPosition): IncomingItem => ({
    position,
    problem,
    raw: line.length > 4096 ? `${line.slice(0, 4096)}…` : line,
  });
  const bytes = Buffer.byteLength(line);
  if (bytes > maxEventBytes)
    return bad(`event is ${bytes} bytes, over this consumer's limit of ${maxEventBytes}`);
  let parsed: { value: unknown; problem: string | undefined };
  try {
    parsed = parseUntrustedJson(line);
  } catch (error) {
    return bad(`malformed JSON: ${(error as Error).message}`);
  }
  const v = parsed.value as Record<string, unknown> | null;
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return bad('event line is not a JSON object');
  const position =
    typeof v.seq === 'number' && Number.isSafeInteger(v.seq) ? String(v.seq) : fallbackPosition;
  if (parsed.problem) return bad(`unsafe JSON: ${parsed.problem}`, position);
  const problem = envelopeProblem(v);
  if (problem) return bad(problem, position);
  const event: BatonEvent = {
    id: v.id as string,
    type: v.type as string,
    key: v.key as string,
    version: v.version as number,
    payload: v.payload,
    headers: v.headers as Record<string, string>,
    occurredAt: v.occurredAt as string,
    source: v.source as string,
  };
  return { position, event };
}

function envelopeProblem(v: Record<string, unknown>): string | undefined {
  if (!isUuid(v.id)) return 'envelope: "id" must be a UUID';
  if (typeof v.type !== 'string' || v.type.length === 0 || v.type.length > 200) {
    return 'envelope: "type" must be a non-empty string';
  }
  if (typeof v.key !== 'string' || v.key.length === 0 || v.key.length > 512) {
    return 'envelope: "key" must be a non-empty string of at most 512 characters';
  }
  if (typeof v.version !== 'number' || !Number.isSafeInteger(v.version) || v.version < 1) {
    return 'envelope: "version" must be a positive integer';
  }
  if (!('payload' in v)) return 'envelope: "payload" is missing';
  const h = v.headers;
  if (typeof h !== 'object' || h === null || Array.isArray(h))
    return 'envelope: "headers" must be an object';
  if (Object.values(h).some((x) => typeof x !== 'string'))
    return 'envelope: header values must be strings';
  if (typeof v.occurredAt !== 'string' || Number.isNaN(Date.parse(v.occurredAt))) {
    return 'envelope: "occurredAt" must be an ISO date';
  }
  if (typeof v.source !== 'string' || v.source.length === 0)
    return 'envelope: "source" must be a non-empty string';
  return undefined;
}

/**
 * One event as a line of the wire format (the envelope and its `seq`), the
 * body of a JetStream message; `decodeEventLine` reads it back. The feed
 * handler builds the same line in SQL.
 */
export function encodeEventLine(event: SequencedEvent): string {
  return JSON.stringify({
    seq: event.seq,
    id: event.id,
    type: event.type,
    key: event.key,
    version: event.version,
    payload: event.payload,
    headers: event.headers,
    occurredAt: event.occurredAt,
    source: event.source,
  });
}
