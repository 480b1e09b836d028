import { randomUUID } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A producer that cannot be trusted: a plain `node:http` server on loopback
 * that serves whatever lines a test scripts, in the HTTP feed's wire format
 * (header line `{"next","count"}`, then one event per line). It checks no
 * auth and validates nothing, so a consumer reading it must defend itself.
 *
 * Batches are numbered: batch k is served to a consumer whose cursor is `k`
 * (or none, for k = 0) and moves the cursor to `k+1`. Asking beyond the last
 * batch gets an empty answer after a short wait (a long-poll that times out).
 */
export interface HostileFeed {
  /** Base URL to give `httpFeedSource` (`…/baton`). */
  url: string;
  /** Appends a batch of raw lines (strings are sent as they are; Buffers byte for byte). */
  push(lines: readonly (string | Buffer)[]): void;
  /** How often each batch was served, by cursor (to see that consumers move on, not re-read). */
  readonly served: Map<string, number>;
  close(): Promise<void>;
}

export async function startHostileFeed(): Promise<HostileFeed> {
  const batches: (readonly (string | Buffer)[])[] = [];
  const served = new Map<string, number>();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://hostile.invalid');
    if (url.pathname !== '/baton/events') return answer(res, 404, '{"error":{"message":"no"}}');
    const after = url.searchParams.get('after') ?? '0';
    const index = Number(after);
    const batch = batches[index];
    if (batch) {
      served.set(after, (served.get(after) ?? 0) + 1);
      const header = Buffer.from(JSON.stringify({ next: String(index + 1), count: batch.length }));
      const parts = [header, ...batch.map((l) => (typeof l === 'string' ? Buffer.from(l) : l))];
      return answer(res, 200, Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [p] : [NL, p]))));
    }
    // Nothing new: hold the long-poll briefly so an idle consumer does not spin.
    const wait = Math.min(Number(url.searchParams.get('wait') ?? '0') || 0, 100);
    setTimeout(() => answer(res, 200, JSON.stringify({ next: after, count: 0 })), wait);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/baton`,
    push: (lines) => {
      batches.push([...lines]);
    },
    served,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const NL = Buffer.from('\n');

function answer(res: ServerResponse, status: number, body: string | Buffer): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/x-ndjson; charset=utf-8' });
  res.end(body);
}

/** The fields of one event line, as a well-behaved producer would send them. */
export interface WireEvent {
  seq: number;
  id: string;
  type: string;
  key: string;
  version: number;
  payload: unknown;
  headers: Record<string, string>;
  occurredAt: string;
  source: string;
}

/** A valid event line object; override any field (or delete it) to make it hostile. */
export function wireEvent(
  seq: number,
  key: string,
  type: string,
  payload: unknown,
  overrides: Partial<Record<keyof WireEvent, unknown>> = {},
): Record<string, unknown> {
  return {
    seq,
    id: randomUUID(),
    type,
    key,
    version: 1,
    payload,
    headers: {},
    occurredAt: '2026-01-02T03:04:05.000Z',
    source: 'hostile',
    ...overrides,
  };
}

/**
 * Serialises an event line and then splices raw JSON text in place of a
 * placeholder string — for what `JSON.stringify` can never produce (an
 * integer past 2^53 written literally, a `"__proto__"` key, raw bytes).
 */
export function lineWith(event: Record<string, unknown>, raw: Record<string, string> = {}): string {
  let text = JSON.stringify(event);
  for (const [placeholder, json] of Object.entries(raw)) {
    const quoted = JSON.stringify(placeholder);
    if (!text.includes(quoted)) throw new Error(`placeholder ${placeholder} not in the line`);
    text = text.replace(quoted, json);
  }
  return text;
}
