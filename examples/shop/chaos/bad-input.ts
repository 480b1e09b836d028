import { authHeaders } from '../../../src/index.ts';
import type { ServiceName } from '../launcher.ts';
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
}

interface HostileRequest {
  service: ServiceName;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Expected: a 4xx. Some inputs are harmless and may be accepted (a GET of an unknown id is a 404, fine). */
  mustNotSucceed: boolean;
  note: string;
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
  secret: string,
  count: number,
  random: SeededRandom,
  concurrency = 8,
): Promise<BadInputReport> {
  const report: BadInputReport = {
    sent: 0,
    refused: 0,
    wronglyAccepted: 0,
    serverErrors: 0,
    noAnswer: 0,
    examples: [],
  };
  const requests = Array.from({ length: count }, () => hostileRequest(random, secret));
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
  let status: number | 'none' = 'none';
  try {
    const response = await fetch(`${urls[r.service]}${r.path}`, {
      method: r.method,
      headers: r.headers,
      body: r.method === 'GET' || r.method === 'HEAD' ? undefined : r.body,
      signal: AbortSignal.timeout(10_000),
    });
    status = response.status;
    await response.arrayBuffer();
  } catch {
    status = 'none';
  }
  const bad =
    status === 'none'
      ? 'noAnswer'
      : status >= 500
        ? 'serverErrors'
        : status < 400 && r.mustNotSucceed
          ? 'wronglyAccepted'
          : undefined;
  if (bad) {
    report[bad]++;
    if (report.examples.length < 20) report.examples.push({ target, status, note: r.note });
  } else if (typeof status === 'number' && status >= 400) {
    report.refused++;
  }
}

function hostileRequest(random: SeededRandom, secret: string): HostileRequest {
  const kind = random.int(0, 9);
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
      const headers = authHeaders({ type: 'hmac', secret }, { method: 'GET', target: signed });
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
      // wrong secret on a participant call
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
        ...authHeaders(
          { type: 'hmac', secret: 'not-the-secret-0123456789' },
          { method: 'POST', target: path, body },
        ),
      };
      return {
        service: 'loyalty',
        method: 'POST',
        path,
        headers,
        body,
        mustNotSucceed: true,
        note: 'participant call with a wrong secret',
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
        ...authHeaders({ type: 'hmac', secret }, { method: 'POST', target: path, body }),
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
      const headers = authHeaders({ type: 'hmac', secret }, { method: 'GET', target: path });
      return {
        service,
        method: 'GET',
        path,
        headers,
        mustNotSucceed: true,
        note: 'feed with bad parameters',
      };
    }
    default: {
      // signed lookups of malformed or unknown entities
      const path = `/baton/entities/${pct(random.pick(['customer', 'nobody', nasty.slice(0, 50) || 'x']))}/${pct(nasty.slice(0, 600) || 'y')}`;
      const headers = authHeaders({ type: 'hmac', secret }, { method: 'GET', target: path });
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
