import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Baton,
  type ClientAuth,
  createBaton,
  generateServiceKeys,
  participantClient,
  type RunningServer,
  serveHttp,
} from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/*
 * Answers are authenticated (security review, issue 12, item 3): on plain
 * HTTP an on-path attacker could change a participant's answer or a feed
 * batch and the caller used it unchecked. With per-service keys a service
 * signs every answer over the request's nonce, the status and the body;
 * a caller that lists the peer's public key refuses anything else — a
 * changed body, an unsigned answer, an old answer replayed for a new
 * request.
 */
const loyaltyKeys = generateServiceKeys('loyalty', 'loyalty-1');
const ordersKeys = generateServiceKeys('orders', 'orders-1');

let database: TestDatabase;
let loyalty: Baton;
let signing: RunningServer;
let unsigned: RunningServer;
let proxy: Server;
let proxyUrl: string;
/** What the proxy does to the answer it passes on. */
let meddle: (body: string, captured: string[]) => string = (body) => body;
const captured: string[] = [];

beforeAll(async () => {
  database = await freshDatabase('signed_answers');
  loyalty = createBaton({ db: database.db, service: 'loyalty' });
  await loyalty.migrate();
  let notes = 0;
  loyalty.participant.action('note', { run: async () => ({ note: ++notes }) });
  const peers = { orders: [ordersKeys.publicKey] };
  signing = await serveHttp(
    loyalty.httpHandler({
      auth: {
        type: 'keys',
        peers,
        keyId: loyaltyKeys.publicKey.keyId,
        privateKey: loyaltyKeys.auth.privateKey,
      },
    }),
  );
  unsigned = await serveHttp(loyalty.httpHandler({ auth: { type: 'keys', peers } }));
  // An on-path attacker between orders and loyalty, on loopback.
  proxy = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers = Object.fromEntries(
      Object.entries(req.headers).filter(
        ([k]) => !['host', 'content-length', 'connection'].includes(k),
      ),
    ) as Record<string, string>;
    const upstream = await fetch(`${signing.url}${req.url}`, {
      method: req.method,
      headers,
      body: chunks.length ? Buffer.concat(chunks) : undefined,
    });
    const text = await upstream.text();
    const answerHeaders: Record<string, string> = {};
    upstream.headers.forEach((v, k) => {
      if (k.startsWith('x-baton-') || k === 'content-type') answerHeaders[k] = v;
    });
    const body = meddle(text, captured);
    captured.push(text);
    res.writeHead(upstream.status, answerHeaders);
    res.end(body);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/baton`;
});
afterAll(async () => {
  proxy?.closeAllConnections();
  await new Promise((resolve) => proxy?.close(resolve));
  await signing?.close();
  await unsigned?.close();
  await database?.drop();
});

const checking: ClientAuth = { ...ordersKeys.auth, peers: { loyalty: [loyaltyKeys.publicKey] } };
const client = (url: string, auth: ClientAuth = checking) =>
  participantClient({ name: 'loyalty', url, auth });

describe("a participant's answers, signed", () => {
  it('takes a signed answer that arrives as it was sent', async () => {
    meddle = (body) => body;
    expect(await client(proxyUrl).call('note', {}, 'k-1')).toEqual({ note: 1 });
  });

  it('refuses an answer changed on the way (retryable: it is not the peer’s answer)', async () => {
    meddle = (body) => body.replace(/"note":\d+/, '"note":999');
    await expect(client(proxyUrl).call('note', {}, 'k-2')).rejects.toMatchObject({
      code: 'BATON_PEER_UNREACHABLE',
      retryable: true,
      message: expect.stringMatching(/signature does not match/),
    });
  });

  it("refuses an old answer replayed for a new request (it is bound to the request's nonce)", async () => {
    meddle = (_body, seen) => seen[0] as string;
    await expect(client(proxyUrl).call('note', {}, 'k-3')).rejects.toThrow(
      /signature does not match/,
    );
  });

  it('refuses an unsigned answer from a peer whose key it lists', async () => {
    await expect(client(`${unsigned.url}/baton`).call('note', {}, 'k-4')).rejects.toThrow(
      /not signed by a listed key of loyalty/,
    );
  });

  it('a caller that lists no keys of its peers takes answers as before', async () => {
    meddle = (body) => body;
    expect(await client(`${unsigned.url}/baton`, ordersKeys.auth).call('note', {}, 'k-5')).toEqual(
      expect.objectContaining({ note: expect.any(Number) }),
    );
  });
});
