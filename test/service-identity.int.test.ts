import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  authHeaders,
  type Baton,
  type ClientAuth,
  createBaton,
  generateServiceKeys,
  participantClient,
  type RunningServer,
  type ServerAuth,
  serveHttp,
} from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/*
 * Every service its own identity and only its own powers (security review,
 * issue 12, item 1). With one shared secret, a request signed for customers
 * was accepted by loyalty, customers' credentials refunded points, and a
 * cancel sent for another saga's branch — or a confirm naming another
 * resource — acted on a reservation that was not the caller's. Here each
 * service signs with its own Ed25519 key; a request names its caller, key
 * and receiving service, and binds its idempotency key; loyalty declares who
 * may use what; barrier rows and idempotency keys belong to their caller
 * and resource.
 */

const orders = generateServiceKeys('orders', 'orders-2026-12');
const customers = generateServiceKeys('customers', 'customers-2026-12');
const ordersNext = generateServiceKeys('orders', 'orders-2027-01');

let database: TestDatabase;
let loyalty: Baton;
let server: RunningServer;
let url: string;
const ran: string[] = [];

beforeAll(async () => {
  database = await freshDatabase('service_identity');
  loyalty = createBaton({ db: database.db, service: 'loyalty' });
  await loyalty.migrate();
  const reservation = (name: string) => ({
    try: async () => void ran.push(`${name}:try`),
    confirm: async () => void ran.push(`${name}:confirm`),
    cancel: async () => void ran.push(`${name}:cancel`),
  });
  loyalty.participant.reservation('points', { ...reservation('points'), callers: ['orders'] });
  loyalty.participant.reservation('seats', {
    ...reservation('seats'),
    callers: ['orders', 'customers'],
  });
  loyalty.participant.action<unknown, { by: string }>('refund', {
    run: async (_tx, _body, context) => ({ by: `refund ${context.idempotencyKey}` }),
    callers: ['orders'],
  });
  let notes = 0;
  loyalty.participant.action<unknown, { note: number }>('note', {
    run: async () => ({ note: ++notes }),
    callers: ['orders', 'customers'],
  });
  const auth: ServerAuth = {
    type: 'keys',
    peers: {
      orders: [orders.publicKey, ordersNext.publicKey],
      customers: [customers.publicKey],
    },
  };
  server = await serveHttp(loyalty.httpHandler({ auth, callers: { feed: ['orders'] } }));
  url = `${server.url}/baton`;
});
afterAll(async () => {
  await server?.close();
  await database?.drop();
});

const as = (auth: ClientAuth) => participantClient({ name: 'loyalty', url, auth });

/** A raw signed POST (to tamper with what the client would send). */
async function post(
  path: string,
  body: unknown,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  const response = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.text() };
}

function signedFor(
  auth: ClientAuth,
  audience: string,
  path: string,
  body: unknown,
  idempotencyKey?: string,
) {
  return authHeaders(auth, {
    method: 'POST',
    target: `/baton${path}`,
    body: JSON.stringify(body),
    audience,
    idempotencyKey,
  });
}

describe('each service signs as itself', () => {
  it('serves a request signed by a listed peer, with either of its listed keys', async () => {
    expect(await as(orders.auth).call('note', {}, 'k-orders-1')).toEqual({ note: 1 });
    expect(await as(ordersNext.auth).call('note', {}, 'k-orders-2')).toEqual({ note: 2 });
  });

  it('refuses a request signed for another service (cross-service replay)', async () => {
    const path = '/actions/note';
    const headers = signedFor(orders.auth, 'customers', path, {}, 'k-x');
    const answer = await post(path, {}, { ...headers, 'idempotency-key': 'k-x' });
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body).error.message).toMatch(
      /signed for "customers", not for this service \(loyalty\)/,
    );
  });

  it("refuses a peer that names another's key or claims another's name", async () => {
    const path = '/actions/note';
    const byOrders = signedFor(orders.auth, 'loyalty', path, {}, 'k-y');
    for (const forged of [
      { ...byOrders, 'x-baton-caller': 'customers' },
      { ...byOrders, 'x-baton-key-id': 'customers-2026-12' },
      { ...byOrders, 'x-baton-caller': 'customers', 'x-baton-key-id': 'customers-2026-12' },
    ]) {
      const answer = await post(path, {}, { ...forged, 'idempotency-key': 'k-y' });
      expect(answer.status).toBe(401);
      expect(answer.body).not.toMatch(/note/);
    }
    // A key this service does not list (an unknown or removed key id) is refused the same way.
    const stranger = generateServiceKeys('orders', 'orders-stolen');
    expect(
      (
        await post(
          path,
          {},
          { ...signedFor(stranger.auth, 'loyalty', path, {}, 'k-z'), 'idempotency-key': 'k-z' },
        )
      ).status,
    ).toBe(401);
  });

  it('binds the idempotency key: a captured request sent with another key is refused', async () => {
    const path = '/actions/note';
    const headers = signedFor(orders.auth, 'loyalty', path, {}, 'k-bound');
    const answer = await post(path, {}, { ...headers, 'idempotency-key': 'k-other' });
    expect(answer.status).toBe(401);
    expect(answer.body).toMatch(/signature does not match/);
  });
});

describe('each endpoint names who may use it', () => {
  it("refuses customers loyalty's refund (only orders may), and serves orders", async () => {
    await expect(as(customers.auth).call('refund', { points: 500 }, 'k-refund')).rejects.toThrow(
      /customers may not use action "refund"/,
    );
    expect(await as(orders.auth).call('refund', { points: 5 }, 'k-refund')).toEqual({
      by: 'refund k-refund',
    });
  });

  it('refuses customers a reservation only orders may use', async () => {
    const call = { txId: 'place:o-1', branch: 'spend', payload: {} };
    await expect(as(customers.auth).reserve('try', 'points', call)).rejects.toThrow(
      /customers may not use reservation "points"/,
    );
  });
});

describe('the feed names who may read it', () => {
  const read = (auth: ClientAuth) => {
    const target = '/baton/events?after=0&limit=10&wait=0';
    const headers = authHeaders(auth, { method: 'GET', target, audience: 'loyalty' });
    return fetch(`${server.url}${target}`, { headers });
  };

  it('serves orders and refuses customers with 403', async () => {
    expect((await read(orders.auth)).status).toBe(200);
    const refused = await read(customers.auth);
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(
      /customers may not use \/events/,
    );
  });
});

describe('barrier rows and idempotency keys belong to their caller and resource', () => {
  it("a cancel from another caller for the same transaction and branch leaves the first caller's reservation alone", async () => {
    ran.length = 0;
    const call = { txId: 'place:o-2', branch: 'spend', payload: {} };
    await as(orders.auth).reserve('try', 'seats', call);
    await as(customers.auth).reserve('cancel', 'seats', call); // its own (empty) branch
    await as(orders.auth).reserve('confirm', 'seats', call);
    expect(ran).toEqual(['seats:try', 'seats:confirm']);
  });

  it('a confirm naming another resource finds no try there', async () => {
    ran.length = 0;
    const call = { txId: 'place:o-3', branch: 'spend', payload: {} };
    await as(orders.auth).reserve('try', 'seats', call);
    await expect(as(orders.auth).reserve('confirm', 'points', call)).rejects.toThrow(
      /nothing was reserved/,
    );
    expect(ran).toEqual(['seats:try']);
  });

  it("the same idempotency key from two callers is two calls, never the other's answer", async () => {
    const first = await as(orders.auth).call<{ note: number }>('note', {}, 'k-shared');
    const second = await as(customers.auth).call<{ note: number }>('note', {}, 'k-shared');
    expect(second.note).toBe(first.note + 1);
    expect(await as(orders.auth).call('note', {}, 'k-shared')).toEqual(first);
  });
});
