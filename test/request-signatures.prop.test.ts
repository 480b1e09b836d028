import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  answerHeaders,
  answerProblem,
  authHeaders,
  type ClientAuth,
  generateServiceKeys,
  RequestVerifier,
  type ServerAuth,
  type SignedParts,
} from '../src/http/auth.ts';
import { MemoryNonces } from '../src/http/nonce-store.ts';

/*
 * The adversary's property for per-service identity (issue 12): take any
 * request a service signed, change any one thing it binds — method, target,
 * a byte of the body, the idempotency key, the timestamp, the nonce, the
 * caller, the key id, the receiving service — or send it to another
 * service, or twice: it is refused. Only the request as signed is served,
 * once. And the same for answers: any changed status or body byte, another
 * request's nonce, another responder — refused.
 */
const orders = generateServiceKeys('orders', 'orders-1');
const customers = generateServiceKeys('customers', 'customers-1');
const loyalty = generateServiceKeys('loyalty', 'loyalty-1');
const NOW = 1_800_000_000_000;

const serverFor = (service: string): ServerAuth => ({
  type: 'keys',
  service,
  peers: { orders: [orders.publicKey], customers: [customers.publicKey] },
  keyId: loyalty.auth.keyId,
  privateKey: loyalty.auth.privateKey,
});

const request = fc.record({
  method: fc.constantFrom('GET', 'POST'),
  target: fc
    .tuple(
      fc.constantFrom('/baton/events', '/baton/actions/refund', '/baton/reservations/points/try'),
      fc.string({ maxLength: 20 }),
    )
    .map(([path, q]) => `${path}?q=${encodeURIComponent(q)}`),
  body: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
  idempotencyKey: fc.option(fc.stringMatching(/^[A-Za-z0-9_.:/-]{1,40}$/), { nil: undefined }),
});

type Change =
  | { kind: 'method' }
  | { kind: 'target' }
  | { kind: 'body'; at: number }
  | { kind: 'idempotency-key' }
  | { kind: 'header'; name: string; to: string }
  | { kind: 'drop'; name: string }
  | { kind: 'another service' }
  | { kind: 'replay' };

/** The headers a `keys` request's identity and signature travel in. */
const SIGNED_HEADERS = [
  'x-baton-timestamp',
  'x-baton-nonce',
  'x-baton-caller',
  'x-baton-key-id',
  'x-baton-audience',
  'x-baton-signature',
] as const;

const change: fc.Arbitrary<Change> = fc.oneof(
  fc.constant({ kind: 'method' } as const),
  fc.constant({ kind: 'target' } as const),
  fc.nat({ max: 1000 }).map((at) => ({ kind: 'body', at }) as const),
  fc.constant({ kind: 'idempotency-key' } as const),
  fc
    .tuple(
      fc.constantFrom(...SIGNED_HEADERS),
      fc.constantFrom('customers', 'orders-2', 'loyalty', '1799999999', 'a'.repeat(32), 'v2=AAAA'),
    )
    .map(([name, to]) => ({ kind: 'header', name, to }) as const),
  fc.constantFrom(...SIGNED_HEADERS).map((name) => ({ kind: 'drop', name }) as const),
  fc.constant({ kind: 'another service' } as const),
  fc.constant({ kind: 'replay' } as const),
);

describe('a signed request, changed in any one bound part', () => {
  it('is refused; only the request as signed is served, once', async () => {
    await fc.assert(
      fc.asyncProperty(request, change, async (r, c) => {
        const verifier = new RequestVerifier(serverFor('loyalty'), () => NOW, new MemoryNonces());
        const parts: SignedParts = { ...r, audience: 'loyalty' };
        const signed = authHeaders(orders.auth, parts, NOW);
        const headers: Record<string, string | undefined> = {
          ...signed,
          'idempotency-key': r.idempotencyKey,
        };
        const sent = { method: r.method, target: r.target, body: r.body };
        let to = verifier;
        switch (c.kind) {
          case 'method':
            sent.method = r.method === 'GET' ? 'POST' : 'GET';
            break;
          case 'target':
            sent.target = `${r.target}&x=1`;
            break;
          case 'body': {
            const body = Buffer.from(r.body.length === 0 ? Buffer.from([0]) : r.body);
            if (r.body.length > 0)
              body[c.at % body.length] = (body[c.at % body.length] as number) ^ 1;
            sent.body = body;
            break;
          }
          case 'idempotency-key':
            headers['idempotency-key'] = `${r.idempotencyKey ?? ''}x`;
            break;
          case 'header':
            if (headers[c.name] === c.to) return; // no change
            headers[c.name] = c.to;
            break;
          case 'drop':
            delete headers[c.name];
            break;
          case 'another service':
            to = new RequestVerifier(serverFor('customers'), () => NOW, new MemoryNonces());
            break;
          case 'replay':
            expect(await verifier.verify(headers, sent)).toBeUndefined();
            break;
        }
        expect(await to.verify(headers, sent)).toEqual(expect.any(String));
        // The untouched original is still served by the service it was signed for (unless replayed).
        if (c.kind !== 'replay')
          expect(
            await verifier.authenticate({ ...signed, 'idempotency-key': r.idempotencyKey }, r),
          ).toEqual({
            caller: 'orders',
          });
      }),
      { numRuns: 300 },
    );
  });
});

describe('a signed answer, changed in any one bound part', () => {
  const caller: ClientAuth = { ...orders.auth, peers: { loyalty: [loyalty.publicKey] } };

  it('is refused; only the answer as signed, to this request, is taken', async () => {
    await fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 599 }),
        fc.string({ maxLength: 80 }),
        fc.constantFrom('status', 'body', 'other request', 'other responder', 'unsigned', 'none'),
        (status, body, what) => {
          const requestHeaders = authHeaders(
            orders.auth,
            { method: 'GET', target: '/baton/events', audience: 'loyalty' },
            NOW,
          );
          const signedAnswer = answerHeaders(serverFor('loyalty'), requestHeaders, {
            status,
            body,
          });
          let answer = { status, body: Buffer.from(body), headers: { ...signedAnswer } };
          let nonceOf = requestHeaders;
          let peer = 'loyalty';
          if (what === 'status') answer = { ...answer, status: status === 200 ? 201 : 200 };
          if (what === 'body') answer = { ...answer, body: Buffer.from(`${body}.`) };
          if (what === 'other request')
            nonceOf = authHeaders(
              orders.auth,
              { method: 'GET', target: '/baton/events', audience: 'loyalty' },
              NOW,
            );
          if (what === 'other responder') peer = 'customers';
          if (what === 'unsigned') answer = { ...answer, headers: {} };
          const problem = answerProblem(
            {
              ...caller,
              peers: { loyalty: [loyalty.publicKey], customers: [customers.publicKey] },
            },
            peer,
            nonceOf,
            { ...answer, headers: new Headers(answer.headers) },
          );
          if (what === 'none') expect(problem).toBeUndefined();
          else expect(problem).toEqual(expect.any(String));
        },
      ),
      { numRuns: 300 },
    );
  });
});
