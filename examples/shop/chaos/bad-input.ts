import { authHeaders, type ClientAuth, generateServiceKeys } from '../../../src/index.ts';
import type { ServiceKeys, ServiceName } from '../launcher.ts';
import type { SeededRandom } from './seeded-random.ts';

export interface BadInputReport {
  sent: number;
  /** Answers in 4xx: refused with a reason, as they should be. */
  refused: number;
  /** 2xx answers to hostile input that must never succeed (an unauthenticated feed read, …). */
  wronglyAccepted: number;
  /** 5xx answers: the service failed instead of refusing. */
  serverErrors: number;
  /** No answer at all (the connection died): a crash would show here. */
  noAnswer: number;
  examples: { target: string; status: number | 'none'; note: string }[];
  /** The attacks on identity and replay, by kind: how many were sent and how many refused. */
  attacks: Record<string, { sent: number; refused: number }>;
}

interface HostileRequest {
  service: ServiceName;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Expected: a 4xx. Some inputs are harmless and may be accepted (a GET of an unknown id is a 404, fine). */
  mustNotSucceed: boolean;
  /** Sent twice: the first may be served, the second (its replay) must be refused. */
  replayed?: boolean;
  /** The attack on identity or replay it stands for (tallied apart in the report). */
  attack?: string;
  note: string;
}

type Identities = Record<ServiceName, ServiceKeys>;

/** Signing headers as `who`, for `to` (the receiving service). */
function signedAs(
  who: ClientAuth,
  to: ServiceName,
  method: string,
  target: string,
  body?: string | Buffer,
): Record<string, string> {
  return authHeaders(who, { method, target, body, audience: to });
}

/** A key nobody listed, claiming to be orders: another's name without its key. */
const STRANGER = generateServiceKeys('orders', 'orders-1').auth;

/**
 * Signed requests that were served (feed reads by orders from customers),
 * kept to be replayed after the faulted run — restarts included where the
 * scenario kills: a nonce remembered in one process's memory would let
 * them through then.
 */
export async function captureServedRequests(
  urls: Record<ServiceName, string>,
  identities: Identities,
  count = 5,
): Promise<HostileRequest[]> {
  const captured: HostileRequest[] = [];
  for (let i = 0; i < count; i++) {
    const path = `/baton/events?after=0&limit=${i + 1}`;
    const headers = signedAs(identities.orders.auth, 'customers', 'GET', path);
    const response = await fetch(`${urls.customers}${path}`, { headers });
    await response.arrayBuffer();
    if (response.status !== 200)
      throw new Error(`a signed feed read by orders was not served (${response.status})`);
    captured.push({
      service: 'customers',
      method: 'GET',
      path,
      headers,
      mustNotSucceed: true,
      note: 'replayed after the run (restarts included)',
      attack: 'replay after the run',
    });
  }
  return captured;
}

const NASTY_STRINGS = [
  '',
  '\u0000',
  'a\u0000b',
  '\ud800',
  "'; DROP TABLE customers; --",
  '../../etc/passwd',
  'x'.repeat(10_000),
  '<script>alert(1)</script>',
  '%00',
  '💥'.repeat(100),
];

const NASTY_JSON = [
  '{',
  '{"id": }',
  '[]',
  'null',
  '"just a string"',
  '{"__proto__": {"admin": true}, "id": "p", "name": "n"}',
  '{"constructor": {"prototype": {"x": 1}}}',
  '{"id": 9007199254740993, "name": "big", "address": "num"}',
  '{"id": "bad-nul", "name": "\\u0000", "address": "nul", "customerId": 1}',
  '{"id": "bad-lone", "name": "\\ud800", "address": "lone", "customerId": 1}',
  JSON.stringify({
    id: 'deep',
    name: 'n',
    address: JSON.parse(`${'{"a":'.repeat(200)}1${'}'.repeat(200)}`),
  }),
];

/**
 * Generates and sends hostile input at the shop's public endpoints and at
 * Baton's endpoints (feed, entity lookups, set sides, reservations,
 * actions): malformed, oversized, unknown, unauthenticated and tampered.
 * Every one must be refused with a 4xx — never a 2xx where it must not
 * succeed, never a 5xx, never a dropped connection.
 */
export async function sendBadInput(
  urls: Record<ServiceName, string>,
  identities: Identities,
  count: number,
  random: SeededRandom,
  replays: readonly HostileRequest[] = [],
  concurrency = 8,
): Promise<BadInputReport> {
  const report: BadInputReport = {
    sent: 0,
    refused: 0,
    wronglyAccepted: 0,
    serverErrors: 0,
    noAnswer: 0,
    examples: [],
    attacks: {},
  };
  const requests = [
    ...replays,
    ...Array.from({ length: count - replays.length }, () => hostileRequest(random, identities)),
  ];
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      const r = requests[i];
      if (!r) return;
      await send(urls, r, report);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return report;
}

async function send(
  urls: Record<ServiceName, string>,
  r: HostileRequest,
  report: BadInputReport,
): Promise<void> {
  report.sent++;
  const target = `${r.service} ${r.method} ${r.path.slice(0, 80)}`;
  const once = async (): Promise<number | 'none'> => {
    try {
      const response = await fetch(`${urls[r.service]}${r.path}`, {
        method: r.method,
        headers: r.headers,
        body: r.method === 'GET' || r.method === 'HEAD' ? undefined : r.body,
        signal: AbortSignal.timeout(10_000),
      });
      await response.arrayBuffer();
      return response.status;
    } catch {
      return 'none';
    }
  };
  // A replay: the original goes first (it may be served); the copy is what is judged.
  if (r.replayed) await once();
  const status = await once();
  const bad =
    status === 'none'
      ? 'noAnswer'
      : status >= 500
        ? 'serverErrors'
        : status < 400 && r.mustNotSucceed
          ? 'wronglyAccepted'
          : undefined;
  if (r.attack) {
    const tally = report.attacks[r.attack] ?? { sent: 0, refused: 0 };
    report.attacks[r.attack] = tally;
    tally.sent++;
    if (typeof status === 'number' && status >= 400 && status < 500) tally.refused++;
  }
  if (bad) {
    report[bad]++;
    if (report.examples.length < 20) report.examples.push({ target, status, note: r.note });
  } else if (typeof status === 'number' && status >= 400) {
    report.refused++;
  }
}

function hostileRequest(random: SeededRandom, identities: Identities): HostileRequest {
  const kind = random.int(0, 12);
  const nasty = random.pick(NASTY_STRINGS);
  const json = random.pick(NASTY_JSON);
  const service = random.pick(['customers', 'orders', 'loyalty'] as const);
  switch (kind) {
    case 0: // malformed or hostile JSON to the public write endpoints
      return {
        service: random.pick(['customers', 'orders'] as const),
        method: 'POST',
        path: random.chance(0.5) ? '/customers' : '/orders',
        headers: { 'content-type': 'application/json' },
        body: json,
        mustNotSucceed: true,
        note: `hostile JSON ${json.slice(0, 40)}`,
      };
    case 1: // missing or wrong-typed fields
      return {
        service: 'orders',
        method: 'POST',
        path: '/orders',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          id: random.chance(0.5) ? nasty : 7,
          customerId: nasty,
          points: random.pick([-1, 1.5, 'ten', 1e12, null]),
        }),
        mustNotSucceed: true,
        note: 'order with invalid fields',
      };
    case 2: // oversized body
      return {
        service,
        method: 'POST',
        path: random.pick(['/customers', '/orders', '/baton/reservations/points/try']),
        headers: { 'content-type': 'application/json' },
        body: Buffer.alloc(random.int(1_100_000, 2_000_000), 0x61),
        mustNotSucceed: true,
        note: 'oversized body',
      };
    case 3: // unknown routes and methods
      return {
        service,
        method: random.pick(['GET', 'PUT', 'DELETE', 'PATCH', 'POST']),
        path: `/${pct(nasty).slice(0, 200)}/${random.int(0, 1000)}`,
        mustNotSucceed: true,
        note: 'unknown route',
      };
    case 4: // unauthenticated feed read
      return {
        service,
        method: 'GET',
        path: `/baton/events?after=0&limit=${random.int(1, 100)}`,
        mustNotSucceed: true,
        note: 'feed without signature',
      };
    case 5: {
      // tampered signature: signed one target, sent another
      const signed = '/baton/events?after=0&limit=10';
      const headers = signedAs(identities.orders.auth, service, 'GET', signed);
      return {
        service,
        method: 'GET',
        path: '/baton/events?after=0&limit=1000',
        headers,
        mustNotSucceed: true,
        note: 'tampered signed request',
      };
    }
    case 6: {
      // a key nobody listed, claiming to be orders, on a participant call
      const path = random.pick([
        '/baton/reservations/points/try',
        '/baton/actions/refund',
        '/baton/reservations/points/cancel',
      ]);
      const body = JSON.stringify({
        txId: 'evil',
        branch: 'x',
        payload: { customerId: 'ada', points: 1_000_000, orderId: 'evil' },
      });
      const headers = {
        'content-type': 'application/json',
        ...signedAs(STRANGER, 'loyalty', 'POST', path, body),
      };
      return {
        service: 'loyalty',
        method: 'POST',
        path,
        headers,
        body,
        mustNotSucceed: true,
        note: 'participant call signed with a stranger key',
        attack: 'stranger key',
      };
    }
    case 7: {
      // signed, but malformed participant body
      const path = random.pick([
        '/baton/reservations/points/try',
        '/baton/reservations/nothing/try',
        '/baton/actions/refund',
        '/baton/actions/unknown',
      ]);
      const body = random.pick([json, JSON.stringify({ txId: nasty, branch: nasty }), '{}']);
      const headers = {
        'content-type': 'application/json',
        ...signedAs(identities.orders.auth, 'loyalty', 'POST', path, body),
      };
      return {
        service: 'loyalty',
        method: 'POST',
        path,
        headers,
        body,
        mustNotSucceed: true,
        note: 'signed but malformed participant call',
      };
    }
    case 8: {
      // signed feed read with bad parameters
      const path = `/baton/events?after=${pct(random.pick(['-1', 'abc', '1e99', nasty]))}&limit=${random.pick(['0', '100000', 'x'])}`;
      const headers = signedAs(identities.orders.auth, service, 'GET', path);
      return {
        service,
        method: 'GET',
        path,
        headers,
        mustNotSucceed: true,
        note: 'feed with bad parameters',
      };
    }
    case 9: {
      // cross-service replay: signed by orders for customers, sent to another service
      const path = '/baton/events?after=0&limit=10';
      const to = random.pick(['orders', 'loyalty'] as const);
      return {
        service: to,
        method: 'GET',
        path,
        headers: signedAs(identities.orders.auth, 'customers', 'GET', path),
        mustNotSucceed: true,
        note: 'request signed for customers, sent to another service',
        attack: 'cross-service replay',
      };
    }
    case 10: {
      // a peer using its own credentials for another's power: customers refunds, reserves, cancels
      const path = random.pick([
        '/baton/actions/refund',
        '/baton/reservations/points/try',
        '/baton/reservations/points/cancel',
      ]);
      const body = JSON.stringify({
        txId: 'place:someone-else',
        branch: 'spend-points',
        payload: { customerId: 'ada', points: 500, orderId: 'o-1' },
      });
      return {
        service: 'loyalty',
        method: 'POST',
        path,
        headers: {
          'content-type': 'application/json',
          'idempotency-key': 'k-customers-refund',
          ...authHeaders(identities.customers.auth, {
            method: 'POST',
            target: path,
            body,
            audience: 'loyalty',
            idempotencyKey: 'k-customers-refund',
          }),
        },
        body,
        mustNotSucceed: true,
        note: "customers using loyalty's refund or reservation (only orders may)",
        attack: "another service's power",
      };
    }
    case 11: {
      // replay of a request that was served: the copy must be refused
      const path = `/baton/events?after=0&limit=${random.int(1, 50)}`;
      return {
        service: 'customers',
        method: 'GET',
        path,
        headers: signedAs(identities.loyalty.auth, 'customers', 'GET', path),
        mustNotSucceed: true,
        replayed: true,
        note: 'a served feed read sent again',
        attack: 'replay',
      };
    }
    case 12: {
      // a reader that is not allowed: loyalty reads the orders feed (nobody may)
      const path = '/baton/events?after=0&limit=10';
      return {
        service: 'orders',
        method: 'GET',
        path,
        headers: signedAs(identities.loyalty.auth, 'orders', 'GET', path),
        mustNotSucceed: true,
        note: 'a service reading a feed it may not read',
        attack: 'feed not allowed',
      };
    }
    default: {
      // signed lookups of malformed or unknown entities
      const path = `/baton/entities/${pct(random.pick(['customer', 'nobody', nasty.slice(0, 50) || 'x']))}/${pct(nasty.slice(0, 600) || 'y')}`;
      const headers = signedAs(identities.orders.auth, 'customers', 'GET', path);
      return {
        service: 'customers',
        method: 'GET',
        path,
        headers,
        mustNotSucceed: false,
        note: 'entity lookup with hostile id',
      };
    }
  }
}

/** Percent-encodes every UTF-8 byte (lone surrogates become U+FFFD); sometimes adds bytes that are not UTF-8 at all. */
function pct(text: string): string {
  const bytes = [...Buffer.from(text, 'utf8')]
    .map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`)
    .join('');
  return text.length % 3 === 0 ? `${bytes}%FF%FE` : bytes;
}
