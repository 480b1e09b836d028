import { context, propagation, type Span, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { participantClient, type Reference, saga } from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import { eventually, SECRET } from './helpers.ts';
import { CUSTOMERS_DDL, declareCustomer, waitForReplica } from './support/refs-fixtures.ts';
import { startService, type TestService } from './support/services.ts';

/*
 * One trace per business operation across services (issue 13, item 1),
 * with the SDK's in-memory exporter: an order placed at orders — a saga
 * checking its customer reference, reserving points at loyalty over HTTP,
 * accepting the order and publishing `order.placed`, which loyalty's
 * consumer handles — is ONE trace, each span a child of the one that
 * caused it, across the three services (in one process here, over real
 * HTTP on loopback and real PostgreSQL).
 */
const exporter = new InMemorySpanExporter();
let customers: TestService;
let orders: TestService;
let loyalty: TestService;
let ref: Reference;
let worker: SagaWorker;
const handledAtLoyalty: string[] = [];

beforeAll(async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
  [customers, orders, loyalty] = await Promise.all([
    startService('customers'),
    startService('orders'),
    startService('loyalty'),
  ]);
  await customers.database.db.query(CUSTOMERS_DDL);
  declareCustomer(customers);
  await customers.baton.install();
  await orders.database.db.query('CREATE TABLE orders (id text PRIMARY KEY, customer_id text)');
  orders.baton.replicate({
    entity: 'customer',
    owner: orders.ownerClientOf(customers),
    consumer: orders.consumerOf(customers),
  });
  ref = orders.baton.reference({
    table: 'orders',
    column: 'customer_id',
    entity: 'customer',
    onDelete: 'keep',
  });
  await orders.baton.install();
  loyalty.baton.participant.reservation('points', {
    try: async () => ({ held: 5 }),
    confirm: async () => {},
    cancel: async () => {},
  });
  loyalty
    .consumerOf(orders)
    .subscribe<{ id: string }>(
      'order.placed',
      async (event) => void handledAtLoyalty.push(event.payload.id),
    );
  const points = participantClient({
    name: 'loyalty',
    url: `${loyalty.server.url}/baton`,
    auth: { type: 'hmac', secret: SECRET },
  });
  orders.baton.sagas.define(
    saga('place-order', async (ctx, input: { id: string; customerId: string }) => {
      await ctx.step('create-order', async (tx) => {
        await ref.check(tx, input.customerId);
        await tx.query('INSERT INTO orders VALUES ($1, $2)', [input.id, input.customerId]);
      });
      await ctx.reserve('spend-points', points, 'points', { points: 5 });
      await ctx.step('accept-order', (tx) =>
        orders.baton.publish(tx, {
          type: 'order.placed',
          key: input.id,
          payload: { id: input.id },
        }),
      );
    }),
  );
  await orders.startConsumers();
  await loyalty.startConsumers();
  worker = orders.baton.sagas.worker({ pollIntervalMs: 20 });
  worker.start();
  await customers.database.db.query("INSERT INTO customers (id, name) VALUES ('ada', 'Ada')");
  await waitForReplica(orders, 'customer', 'ada', { state: 'ACTIVE' });
});

afterAll(async () => {
  await worker?.stop();
  await loyalty?.stop();
  await orders?.stop();
  await customers?.stop();
  trace.disable();
  propagation.disable();
  context.disable();
});

describe('traces', () => {
  it('follows a placed order across the three services as one trace', async () => {
    exporter.reset();
    const tracer = trace.getTracer('test');
    let sagaId = '';
    const root = await tracer.startActiveSpan('place order', async (span: Span) => {
      const { id } = await orders.baton.sagas.start('place-order', { id: 'o1', customerId: 'ada' });
      sagaId = id;
      await orders.baton.sagas.waitFor(id, 10_000);
      span.end();
      return span;
    });
    await eventually(async () => handledAtLoyalty.includes('o1'), 'loyalty handled order.placed');
    // The run's span ends after its last commit, and a waiter may be told
    // of that commit first: wait for the span rather than race it.
    await eventually(
      async () => exporter.getFinishedSpans().some((s) => s.name === 'saga place-order'),
      'the saga run span ended',
    );
    const traceId = root.spanContext().traceId;
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const parentOf = (s: ReadableSpan) => byId.get(s.parentSpanContext?.spanId ?? '')?.name;
    const one = (name: string) => {
      const found = spans.filter((s) => s.name === name);
      expect(
        found.map((s) => s.name),
        `one span "${name}"`,
      ).toEqual([name]);
      return found[0] as ReadableSpan;
    };
    const service = (s: ReadableSpan) => s.attributes['baton.saga.id'];

    // The saga's run continues the trace it was started in.
    expect(parentOf(one('saga place-order'))).toBe('place order');
    expect(service(one('saga place-order'))).toBe(sagaId);
    for (const step of ['create-order', 'spend-points', 'accept-order'])
      expect(parentOf(one(`saga step ${step}`))).toBe('saga place-order');
    expect(parentOf(one('reference check customer'))).toBe('saga step create-order');
    // The reservation's try and confirm: client spans at orders, server spans at loyalty.
    const servers = spans.filter(
      (s) => s.name === 'POST /baton/reservations/{resource}/{try|confirm|cancel}',
    );
    expect(servers).toHaveLength(2);
    for (const server of servers) expect(parentOf(server)).toBe('POST');
    expect(parentOf(one('saga confirm spend-points'))).toBe('saga place-order');
    // The event published in the accepting step, handled at loyalty after relay and feed.
    expect(parentOf(one('send order.placed'))).toBe('saga step accept-order');
    const processed = one('process order.placed');
    expect(parentOf(processed)).toBe('send order.placed');
    expect(processed.attributes).toMatchObject({
      'messaging.system': 'baton',
      'messaging.operation.type': 'process',
      'messaging.destination.name': 'orders',
      'messaging.consumer.group.name': 'loyalty-from-orders',
    });
  });
});
