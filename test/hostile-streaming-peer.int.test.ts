import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpFeedSource, ownerClient, participantClient } from '../src/index.ts';
import { SECRET } from './helpers.ts';

/*
 * A hostile peer streams an endless answer (security review, issue 12, item
 * 6): the feed client buffered 516 MiB before its limit refused it, and the
 * owner and participant clients had no limit at all. Every client must stop
 * reading at its limit (16 MiB by default) and fail with a protocol error,
 * its process's memory growing by no more than the limit and some slack.
 */
const CHUNK = Buffer.alloc(256 * 1024, 0x61); // 'aaaa…': never valid JSON or NDJSON
const MAX_STREAMED = 400 * 1024 * 1024;
const auth = { type: 'hmac', secret: SECRET } as const;

let server: Server;
let url: string;
let streamedBytes = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, {
      'content-type': req.url?.includes('/events') ? 'application/x-ndjson' : 'application/json',
    });
    let sent = 0;
    const pump = () => {
      while (sent < MAX_STREAMED) {
        sent += CHUNK.length;
        streamedBytes += CHUNK.length;
        if (!res.write(CHUNK)) return void res.once('drain', pump);
      }
      res.end();
    };
    res.on('close', () => {
      sent = MAX_STREAMED; // the client hung up: stop
    });
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/baton`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** Runs `call`, sampling RSS; answers the error it ended with and the peak growth. */
async function measured(call: () => Promise<unknown>) {
  globalThis.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 5);
  streamedBytes = 0;
  const error = await call().then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  );
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  return {
    error,
    growthMiB: (peak - base) / 1024 / 1024,
    streamedMiB: streamedBytes / 1024 / 1024,
  };
}

const LIMIT_MIB = 16;
/**
 * The bound stated in the README: the answer read up to the limit, joined
 * once and decoded (≈ 3 × the limit at worst), plus the HTTP client's own
 * buffers — whatever the peer sends (here 400 MiB).
 */
const BOUND_MIB = 4 * LIMIT_MIB + 32;

describe('a peer streaming an endless answer', () => {
  beforeAll(async () => {
    // Warm up the HTTP client once: its first use loads code and allocates pools.
    await participantClient({ name: 'loyalty', url, auth })
      .call('warm-up', {}, 'k-0')
      .catch(() => {});
  });

  it.each([
    [
      'the owner client (lookup)',
      () => ownerClient({ name: 'customers', url, auth }).lookup('customer', 'c1'),
    ],
    [
      'the participant client (action)',
      () => participantClient({ name: 'loyalty', url, auth }).call('refund', {}, 'k-1'),
    ],
    [
      'the participant client (reservation)',
      () =>
        participantClient({ name: 'loyalty', url, auth }).reserve('try', 'points', {
          txId: 't',
          branch: 'b',
          payload: {},
        }),
    ],
    [
      'the feed client',
      () =>
        // Its default limit is 64 MiB (a batch of up to 1,000 events); 16 here, as the others.
        httpFeedSource({
          name: 'customers',
          url,
          auth,
          maxResponseBytes: LIMIT_MIB * 1024 * 1024,
        }).fetch({
          cursor: undefined,
          limit: 10,
          waitMs: 0,
          types: [],
          signal: new AbortController().signal,
        }),
    ],
  ])(
    '%s stops at its limit and refuses the answer',
    async (_what, call) => {
      const { error, growthMiB, streamedMiB } = await measured(call);
      expect(error?.code).toBe('BATON_PEER_PROTOCOL');
      expect(error?.message).toMatch(/limit|bytes/i);
      expect(growthMiB).toBeLessThan(BOUND_MIB);
      // It hung up near the limit, not after reading the peer's 400 MiB.
      expect(streamedMiB).toBeLessThan(LIMIT_MIB + 32);
    },
    60_000,
  );
});
