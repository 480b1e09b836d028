import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  authHeaders,
  type ClientAuth,
  channelsFor,
  createBaton,
  createFeedHandler,
  httpFeedSource,
  type RunningServer,
  type ServerAuth,
  serveHttp,
  TransportError,
} from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase, SECRET } from './helpers.ts';

const OTHER_SECRET = 'other-secret-fedcba9876543210';
const TOKEN = 'bearer-token-0123456789abcdef';
/** Appears in every published payload: a 401 body must never contain it. */
const MARKER = 'PAYLOAD-MARKER-7f3a';
const TARGET = '/baton/events?after=0&limit=10&wait=0';

let database: TestDatabase;
const servers: { close(): Promise<void> }[] = [];
const eventIds: string[] = [];

/** Serves the producer's feed with the given auth on loopback. */
async function serve(auth: ServerAuth, now?: () => number): Promise<RunningServer> {
  const feed = now
    ? createFeedHandler({
        db: database.db,
        schemaSql: '"baton"',
        feedChannel: channelsFor('baton').feed,
        auth,
        now,
      })
    : createBaton({ db: database.db, service: 'customers' }).feedHandler({ auth });
  const server = await serveHttp((req, signal) => feed.handle(req, signal));
  servers.push(server, feed);
  return server;
}

function signed(auth: ClientAuth, target = TARGET, nowMs = Date.now()): Record<string, string> {
  return authHeaders(auth, { method: 'GET', target }, nowMs);
}

async function get(server: RunningServer, target: string, headers: Record<string, string> = {}) {
  const response = await fetch(`${server.url}${target}`, { headers });
  return { status: response.status, body: await response.text() };
}

/** A GET carrying a body (fetch refuses to send one). */
function getWithBody(
  server: RunningServer,
  target: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const options = {
      method: 'GET',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
    };
    const req = request(new URL(`${server.url}${target}`), options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A 401 that says why and carries no event data. */
function expectRefused(answer: { status: number; body: string }, reason: RegExp): void {
  expect(answer.status).toBe(401);
  expect(answer.body).not.toContain(MARKER);
  for (const id of eventIds) expect(answer.body).not.toContain(id);
  const parsed = JSON.parse(answer.body) as { error: { code: string; message: string } };
  // A replay of a validly signed request says so (its sender may retry with a fresh nonce).
  expect(parsed.error.code).toBe(
    /replayed/.test(reason.source) ? 'BATON_REPLAYED' : 'BATON_UNAUTHENTICATED',
  );
  expect(parsed.error.message).toMatch(reason);
}

function expectServed(answer: { status: number; body: string }): void {
  expect(answer.status).toBe(200);
  expect(answer.body).toContain(MARKER);
  const [header, ...lines] = answer.body.split('\n');
  expect(JSON.parse(header as string)).toEqual({ next: '3', count: 3 });
  expect(lines).toHaveLength(3);
}

beforeAll(async () => {
  database = await freshDatabase('auth');
  const producer = createBaton({ db: database.db, service: 'customers' });
  const published = await database.db.transaction((tx) =>
    producer.publish(
      tx,
      [1, 2, 3].map((i) => ({
        type: 'customer.registered',
        key: `c${i}`,
        payload: { id: `c${i}`, note: MARKER },
      })),
    ),
  );
  eventIds.push(...published.map((e) => e.id));
  expect(await producer.relay().runOnce()).toBe(3);
});

afterAll(async () => {
  for (const s of servers.reverse()) await s.close();
  await database?.drop();
});

describe('HMAC-signed feed', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await serve({ type: 'hmac', secrets: [SECRET] });
  });

  it('serves a correctly signed request', async () => {
    expectServed(await get(server, TARGET, signed({ type: 'hmac', secret: SECRET })));
  });

  it('refuses a request without signature headers', async () => {
    expectRefused(await get(server, TARGET), /missing signature headers/);
    const partial = signed({ type: 'hmac', secret: SECRET });
    delete partial['x-baton-nonce'];
    expectRefused(await get(server, TARGET, partial), /missing signature headers/);
  });

  it('refuses a request signed with the wrong secret', async () => {
    expectRefused(
      await get(server, TARGET, signed({ type: 'hmac', secret: OTHER_SECRET })),
      /signature does not match/,
    );
  });

  it('refuses a signature made for another target (changed query or path)', async () => {
    const headers = signed({ type: 'hmac', secret: SECRET }, TARGET);
    for (const tampered of [
      '/baton/events?after=1&limit=10&wait=0',
      '/baton/events?after=0&limit=11&wait=0',
      '/baton/events?after=0&limit=10&wait=0&types=customer.registered',
      '/baton/events?limit=10&after=0&wait=0',
      '/baton/events',
    ]) {
      expectRefused(await get(server, tampered, { ...headers }), /signature does not match/);
    }
  });

  it('refuses a request whose body differs from the signed one', async () => {
    const body = 'smuggled body';
    const unsigned = signed({ type: 'hmac', secret: SECRET });
    expectRefused(await getWithBody(server, TARGET, unsigned, body), /signature does not match/);
    // The same request with the body signed passes: the body is what made the difference.
    const withBody = authHeaders(
      { type: 'hmac', secret: SECRET },
      { method: 'GET', target: TARGET, body },
    );
    expectServed(await getWithBody(server, TARGET, withBody, body));
  });

  it('refuses a timestamp outside the window (client clock behind or ahead)', async () => {
    const sixMinutes = 6 * 60 * 1000;
    expectRefused(
      await get(
        server,
        TARGET,
        signed({ type: 'hmac', secret: SECRET }, TARGET, Date.now() - sixMinutes),
      ),
      /signature expired: timestamp is 3\d\d s away .*window 300 s/,
    );
    expectRefused(
      await get(
        server,
        TARGET,
        signed({ type: 'hmac', secret: SECRET }, TARGET, Date.now() + sixMinutes),
      ),
      /signature expired/,
    );
    // Just inside the window is still fine.
    expectServed(
      await get(
        server,
        TARGET,
        signed({ type: 'hmac', secret: SECRET }, TARGET, Date.now() - 240_000),
      ),
    );
  });

  it('refuses a request replayed with the same nonce', async () => {
    const headers = signed({ type: 'hmac', secret: SECRET });
    expectServed(await get(server, TARGET, headers));
    expectRefused(await get(server, TARGET, headers), /replayed request/);
    expectRefused(await get(server, TARGET, headers), /replayed request/);
  });

  it('refuses a replay sent to another instance of the service, or after a restart', async () => {
    // Instances of one service share its database: so does what they have seen.
    const instanceA = await serve({ type: 'hmac', secrets: [SECRET] });
    const instanceB = await serve({ type: 'hmac', secrets: [SECRET] });
    const headers = signed({ type: 'hmac', secret: SECRET });
    expectServed(await get(instanceA, TARGET, headers));
    expectRefused(await get(instanceB, TARGET, headers), /replayed request/);
    await instanceA.close();
    const restarted = await serve({ type: 'hmac', secrets: [SECRET] });
    expectRefused(await get(restarted, TARGET, headers), /replayed request/);
  });

  it('does not burn a nonce on a request that failed verification', async () => {
    const good = signed({ type: 'hmac', secret: SECRET });
    const forged = { ...good, 'x-baton-signature': `v1=${'0'.repeat(64)}` };
    expectRefused(await get(server, TARGET, forged), /signature does not match/);
    expectServed(await get(server, TARGET, good));
  });

  it('refuses malformed signature headers, saying which', async () => {
    const good = signed({ type: 'hmac', secret: SECRET });
    const cases: [Record<string, string>, RegExp][] = [
      [{ 'x-baton-timestamp': 'yesterday' }, /x-baton-timestamp must be Unix seconds/],
      [{ 'x-baton-timestamp': '-5' }, /x-baton-timestamp must be Unix seconds/],
      [{ 'x-baton-timestamp': '1'.repeat(13) }, /x-baton-timestamp must be Unix seconds/],
      [{ 'x-baton-nonce': 'not-hex-at-all!!' }, /x-baton-nonce must be 16–64 hex/],
      [{ 'x-baton-nonce': 'abc' }, /x-baton-nonce must be 16–64 hex/],
      [{ 'x-baton-nonce': 'a'.repeat(65) }, /x-baton-nonce must be 16–64 hex/],
      [{ 'x-baton-signature': 'garbage' }, /signature does not match/],
      [
        { 'x-baton-signature': (good['x-baton-signature'] as string).slice(3) },
        /signature does not match/,
      ],
      [
        { 'x-baton-signature': (good['x-baton-signature'] as string).replace('v1=', 'v2=') },
        /signature does not match/,
      ],
      [
        { 'x-baton-signature': (good['x-baton-signature'] as string).toUpperCase() },
        /signature does not match/,
      ],
    ];
    for (const [override, reason] of cases) {
      expectRefused(await get(server, TARGET, { ...good, ...override }), reason);
    }
    // None of those used up the nonce: the untouched request still works.
    expectServed(await get(server, TARGET, good));
  });

  it('makes the consumer fail with a non-retryable TransportError naming the 401', async () => {
    const source = httpFeedSource({
      name: 'customers',
      url: `${server.url}/baton`,
      auth: { type: 'hmac', secret: OTHER_SECRET },
    });
    const fetching = source.fetch({
      cursor: undefined,
      limit: 10,
      waitMs: 0,
      types: [],
      signal: new AbortController().signal,
    });
    await expect(fetching).rejects.toBeInstanceOf(TransportError);
    await expect(fetching).rejects.toMatchObject({
      code: 'BATON_PEER_REFUSED',
      retryable: false,
      status: 401,
      message: expect.stringMatching(
        /answered 401 BATON_UNAUTHENTICATED to events: signature does not match/,
      ),
    });
  });

  it('lets the consumer read with the right secret', async () => {
    const source = httpFeedSource({
      name: 'customers',
      url: `${server.url}/baton`,
      auth: { type: 'hmac', secret: SECRET },
    });
    const batch = await source.fetch({
      cursor: undefined,
      limit: 10,
      waitMs: 0,
      types: [],
      signal: new AbortController().signal,
    });
    expect(batch.cursor).toBe('3');
    expect(batch.items.map((i) => i.event?.id)).toEqual(eventIds);
  });
});

describe('HMAC with an injected server clock', () => {
  it('refuses signatures that are fresh by the client clock but outside the server window', async () => {
    let serverNow = Math.floor(Date.now() / 1000) * 1000;
    const server = await serve(
      { type: 'hmac', secrets: [SECRET], windowSeconds: 30 },
      () => serverNow,
    );
    const clientNow = serverNow;
    expectServed(
      await get(server, TARGET, signed({ type: 'hmac', secret: SECRET }, TARGET, clientNow)),
    );
    serverNow = clientNow + 31_000;
    expectRefused(
      await get(server, TARGET, signed({ type: 'hmac', secret: SECRET }, TARGET, clientNow)),
      /signature expired: timestamp is 3\d s away from the server clock \(window 30 s\)/,
    );
    serverNow = clientNow - 31_000;
    expectRefused(
      await get(server, TARGET, signed({ type: 'hmac', secret: SECRET }, TARGET, clientNow)),
      /signature expired/,
    );
    serverNow = clientNow + 29_000;
    expectServed(
      await get(server, TARGET, signed({ type: 'hmac', secret: SECRET }, TARGET, clientNow)),
    );
  });

  it('tells the clock only to a caller who holds the secret', async () => {
    const serverNow = Math.floor(Date.now() / 1000) * 1000;
    const server = await serve(
      { type: 'hmac', secrets: [SECRET], windowSeconds: 30 },
      () => serverNow,
    );
    // A stranger probing with old timestamps learns only that the signature is wrong.
    for (const offset of [-3_600_000, -31_000, 31_000, 86_400_000]) {
      const answer = await get(
        server,
        TARGET,
        signed({ type: 'hmac', secret: 'not-the-secret-0123456789' }, TARGET, serverNow + offset),
      );
      expectRefused(answer, /signature does not match/);
      expect(JSON.stringify(answer)).not.toMatch(/clock|away|expired/);
    }
  });

  it('keeps refusing a replay for as long as the signature could be accepted', async () => {
    let serverNow = Math.floor(Date.now() / 1000) * 1000;
    const server = await serve(
      { type: 'hmac', secrets: [SECRET], windowSeconds: 30 },
      () => serverNow,
    );
    const clientNow = serverNow;
    const headers = signed({ type: 'hmac', secret: SECRET }, TARGET, clientNow);
    expectServed(await get(server, TARGET, headers));
    // Any later moment at which the timestamp is still inside the window.
    for (const later of [1_000, 15_000, 29_000, 30_000]) {
      serverNow = clientNow + later;
      expectRefused(await get(server, TARGET, headers), /replayed request/);
    }
    serverNow = clientNow + 31_000;
    expectRefused(await get(server, TARGET, headers), /signature expired/);
  });
});

describe('secret rotation', () => {
  it('accepts requests signed with any listed secret, and no other', async () => {
    const server = await serve({ type: 'hmac', secrets: [SECRET, OTHER_SECRET] });
    expectServed(await get(server, TARGET, signed({ type: 'hmac', secret: SECRET })));
    expectServed(await get(server, TARGET, signed({ type: 'hmac', secret: OTHER_SECRET })));
    expectRefused(
      await get(server, TARGET, signed({ type: 'hmac', secret: 'third-secret-0000000000000' })),
      /signature does not match/,
    );
  });
});

describe('bearer-token feed', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await serve({ type: 'bearer', tokens: [TOKEN, `${TOKEN}-next`] });
  });

  it('serves a request with a listed token (either during rotation)', async () => {
    expectServed(await get(server, TARGET, { authorization: `Bearer ${TOKEN}` }));
    expectServed(await get(server, TARGET, { authorization: `Bearer ${TOKEN}-next` }));
  });

  it('refuses a missing, malformed or wrong token', async () => {
    expectRefused(await get(server, TARGET), /missing Authorization header/);
    expectRefused(await get(server, TARGET, { authorization: TOKEN }), /not a bearer token/);
    expectRefused(
      await get(server, TARGET, { authorization: `Basic ${TOKEN}` }),
      /not a bearer token/,
    );
    expectRefused(await get(server, TARGET, { authorization: 'Bearer ' }), /not a bearer token/);
    expectRefused(
      await get(server, TARGET, { authorization: 'Bearer wrong-token' }),
      /bearer token not accepted/,
    );
    expectRefused(
      await get(server, TARGET, { authorization: `Bearer ${TOKEN}x` }),
      /bearer token not accepted/,
    );
    expectRefused(
      await get(server, TARGET, { authorization: `Bearer ${TOKEN.slice(0, -1)}` }),
      /bearer token not accepted/,
    );
  });

  it('does not accept HMAC headers in place of the token', async () => {
    expectRefused(
      await get(server, TARGET, signed({ type: 'hmac', secret: TOKEN })),
      /missing Authorization header/,
    );
  });

  it('makes the consumer fail with a non-retryable TransportError on a wrong token', async () => {
    const source = httpFeedSource({
      name: 'customers',
      url: `${server.url}/baton`,
      auth: { type: 'bearer', token: 'wrong-token-0123456789' },
    });
    await expect(
      source.fetch({
        cursor: '0',
        limit: 5,
        waitMs: 0,
        types: [],
        signal: new AbortController().signal,
      }),
    ).rejects.toMatchObject({
      name: 'PeerError',
      code: 'BATON_PEER_REFUSED',
      retryable: false,
      message: expect.stringContaining('401'),
    });
  });
});

describe('auth configuration', () => {
  it('refuses to start a feed with no or short secrets', () => {
    const producer = createBaton({ db: database.db, service: 'customers' });
    for (const auth of [
      { type: 'hmac', secrets: [] },
      { type: 'hmac', secrets: ['short'] },
      { type: 'bearer', tokens: [] },
      { type: 'bearer', tokens: [SECRET, 'short'] },
      { type: 'none' },
      undefined,
    ]) {
      expect(() => producer.feedHandler({ auth: auth as ServerAuth })).toThrow(/auth needs/);
    }
  });
});
