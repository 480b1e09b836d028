import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningShop, startShop } from '../examples/shop/launcher.ts';
import { request, until } from '../examples/shop/shop-client.ts';
import type { RecordedSpan } from '../examples/shop/trace-file.ts';
import { freePort } from '../src/pg.ts';
import { type SagaProxy, startSagaProxy } from './fixtures/saga-proxy.ts';

/*
 * One placed order is ONE trace across the shop's three service processes
 * (issue 13, item 1), each process with an OpenTelemetry SDK recording its
 * spans: the caller's request at orders → the place-order saga and its
 * steps → the reference check, which asks customers (the customer is not
 * replicated yet: orders' feed from customers is held back) → the points
 * reservation's try and confirm at loyalty. Every span's parent is the span
 * that caused it, across the process boundaries.
 */
const SERVER = 1;
const CLIENT = 2;

describe('a placed order, traced across the shop’s three processes', () => {
  let shop: RunningShop;
  let proxy: SagaProxy;
  const dir = mkdtempSync(join(tmpdir(), 'baton-trace-'));

  beforeAll(async () => {
    const customersPort = await freePort();
    // orders → customers: feed reads held back (so the new customer is not replicated), lookups pass.
    proxy = await startSagaProxy(`http://127.0.0.1:${customersPort}`, ({ path }) =>
      path.includes('/baton/events') ? 'hold' : 'pass',
    );
    shop = await startShop({
      traceDir: dir,
      ports: { customers: customersPort },
      peerUrl: (from, to, direct) => (from === 'orders' && to === 'customers' ? proxy.url : direct),
    });
  }, 180_000);
  afterAll(async () => {
    await proxy?.close();
    await shop?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is one trace with the expected parent/child structure', async () => {
    const register = await request(shop.urls.customers, 'POST', '/customers', {
      id: 'tara',
      name: 'Tara',
      address: '3 Quay',
    });
    expect(register.status).toBe(201);
    await until(
      async () => (await request(shop.urls.loyalty, 'GET', '/accounts/tara')).status === 200,
      'loyalty opens tara’s account',
    );

    // The caller's own span: the root every span of the order must descend from.
    const traceId = randomBytes(16).toString('hex');
    const rootSpanId = randomBytes(8).toString('hex');
    const placed = await request(
      shop.urls.orders,
      'POST',
      '/orders',
      { id: 'o-traced', customerId: 'tara', points: 30 },
      { traceparent: `00-${traceId}-${rootSpanId}-01` },
    );
    expect(placed.status).toBe(202);
    await until(
      async () =>
        (await request<{ state?: string }>(shop.urls.orders, 'GET', '/orders/o-traced')).body
          .state === 'placed',
      'the order placed',
    ).catch(async (error) => {
      const order = await request(shop.urls.orders, 'GET', '/orders/o-traced');
      throw new Error(`${error.message}: ${JSON.stringify(order.body)}`);
    });

    // Spans are written as they end; the confirm's server span and the run's span may land a moment after.
    let spans: RecordedSpan[] = [];
    await until(async () => {
      spans = (['customers', 'orders', 'loyalty'] as const)
        .flatMap((s) => {
          try {
            return readFileSync(join(dir, `${s}.jsonl`), 'utf8').split('\n');
          } catch {
            return [];
          }
        })
        .filter(Boolean)
        .map((line) => JSON.parse(line) as RecordedSpan)
        .filter((s) => s.traceId === traceId);
      // The run's own span ends last, after the confirm was answered: wait for it too.
      return (
        spans.filter((s) => s.service === 'loyalty' && s.kind === SERVER).length >= 2 &&
        spans.some((s) => s.service === 'orders' && s.name === 'saga place-order')
      );
    }, 'the spans of all three services');

    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const parentOf = (s: RecordedSpan) => (s.parentSpanId ? byId.get(s.parentSpanId) : undefined);
    const one = (service: string, name: string | RegExp) => {
      const found = spans.filter(
        (s) =>
          s.service === service && (typeof name === 'string' ? s.name === name : name.test(s.name)),
      );
      expect(
        found.map((s) => `${s.service}: ${s.name}`),
        `one span ${name} at ${service}`,
      ).toHaveLength(1);
      return found[0] as RecordedSpan;
    };

    // Every span of the trace descends from the caller's span: nothing started a trace of its own.
    for (const span of spans) {
      let at: RecordedSpan | undefined = span;
      while (at && at.parentSpanId !== rootSpanId) at = parentOf(at);
      expect(at, `${span.service}: ${span.name} descends from the caller`).toBeDefined();
    }
    expect(new Set(spans.map((s) => s.service))).toEqual(
      new Set(['customers', 'orders', 'loyalty']),
    );

    const request_ = one('orders', 'POST /orders');
    expect(request_.parentSpanId).toBe(rootSpanId);
    const run = one('orders', 'saga place-order');
    expect(parentOf(run)).toBe(request_);
    for (const step of ['create-order', 'spend-points', 'accept-order'])
      expect(parentOf(one('orders', `saga step ${step}`))).toBe(run);

    // The reference check asks the owner: a client span at orders, a server span at customers.
    const check = one('orders', 'reference check customer');
    expect(parentOf(check)?.name).toBe('saga step create-order');
    const lookup = spans.find((s) => s.service === 'customers' && s.kind === SERVER);
    expect(lookup, 'customers answered the lookup').toBeDefined();
    const lookupClient = parentOf(lookup as RecordedSpan);
    expect(lookupClient?.service).toBe('orders');
    expect(lookupClient?.kind).toBe(CLIENT);
    let up = lookupClient;
    while (up && up !== check) up = parentOf(up);
    expect(up, 'the lookup is part of the reference check').toBe(check);

    // The reservation: try under its step, confirm under the run; each answered at loyalty.
    const servers = spans.filter((s) => s.service === 'loyalty' && s.kind === SERVER);
    expect(servers.map((s) => s.name)).toEqual([
      'POST /baton/reservations/{resource}/{try|confirm|cancel}',
      'POST /baton/reservations/{resource}/{try|confirm|cancel}',
    ]);
    const callers = servers.map((s) => parentOf(s));
    for (const caller of callers)
      expect([caller?.service, caller?.kind]).toEqual(['orders', CLIENT]);
    const grandparents = callers.map((c) => (c ? parentOf(c)?.name : undefined)).sort();
    expect(grandparents).toEqual(['saga confirm spend-points', 'saga step spend-points']);
    expect(parentOf(one('orders', 'saga confirm spend-points'))).toBe(run);
  });
});
