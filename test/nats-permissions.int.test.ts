import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NatsCluster, startNatsCluster } from '../examples/shop/nats-cluster.ts';
import { type Baton, createBaton } from '../src/index.ts';
import type { Consumer } from '../src/messaging/consumer.ts';
import type { Relay } from '../src/messaging/relay.ts';
import { natsSource, natsTransport, streamName, subjectFor } from '../src/nats.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { encodeEventLine } from '../src/transports/http-feed/wire-format.ts';
import { eventually, freshDatabase, untilReady } from './helpers.ts';

/*
 * On NATS, events are not signed: who may publish on a service's subjects is
 * the NATS account's to say (README, "Running the cluster in production").
 * This runs Baton under exactly the permissions the README recommends — a
 * user per service — and attacks it as a peer with NATS access: orders'
 * credentials publishing an event into customers' stream, announcing a
 * forged head, answering repairs in customers' place, reading a stream it
 * was not given. Every attempt is refused by the server, and events still
 * flow from customers to orders.
 */
const STREAM = streamName('customers');
const PASSWORD = {
  customers: 'customers-secret-0123456789',
  orders: 'orders-secret-0123456789',
  admin: 'admin-secret-0123456789',
};

/** The README's recipe, for a producer `customers` and a subscriber `orders`. */
const AUTHORIZATION = `
authorization {
  users = [
    { user: admin, password: ${PASSWORD.admin} }
    { user: customers, password: ${PASSWORD.customers}, permissions: {
        publish: [ "baton.customers.>", "baton-control.customers.>",
                   "$JS.API.INFO", "$JS.API.STREAM.*.${STREAM}", "$JS.API.STREAM.MSG.GET.${STREAM}" ]
        subscribe: [ "_INBOX.>", "baton-control.customers.repair" ] } }
    { user: orders, password: ${PASSWORD.orders}, permissions: {
        publish: [ "baton-control.customers.repair",
                   "$JS.API.INFO", "$JS.API.STREAM.INFO.${STREAM}", "$JS.API.STREAM.MSG.GET.${STREAM}",
                   "$JS.API.CONSUMER.CREATE.${STREAM}", "$JS.API.CONSUMER.CREATE.${STREAM}.>",
                   "$JS.API.CONSUMER.MSG.NEXT.${STREAM}.>", "$JS.API.CONSUMER.DELETE.${STREAM}.>",
                   "$JS.API.CONSUMER.INFO.${STREAM}.>" ]
        subscribe: [ "_INBOX.>", "baton-control.customers.head" ] } }
  ]
}`;

describe('NATS: a service under its own NATS user cannot act as another', () => {
  let cluster: NatsCluster;
  let producerDb: TestDatabase;
  let consumerDb: TestDatabase;
  let customersNc: NatsConnection;
  let ordersNc: NatsConnection;
  let customers: Baton;
  let relay: Relay;
  let consumer: Consumer;
  const refusals: string[] = [];

  beforeAll(async () => {
    cluster = await startNatsCluster(3, AUTHORIZATION);
    [producerDb, consumerDb] = await Promise.all([
      freshDatabase('nats_perm_customers'),
      freshDatabase('nats_perm_orders'),
    ]);
    const as = async (user: keyof typeof PASSWORD) => {
      const nc = await connect({
        servers: cluster.servers,
        user,
        pass: PASSWORD[user],
        maxReconnectAttempts: -1,
        reconnectTimeWait: 100,
      });
      // The server tells a client each refused publish or subscription asynchronously.
      void (async () => {
        for await (const s of nc.status())
          if (s.type === 'error') refusals.push(`${user}: ${String(s.error)}`);
      })();
      return nc;
    };
    customersNc = await as('customers');
    ordersNc = await as('orders');
    customers = createBaton({ db: producerDb.db, service: 'customers' });
    const transport = await untilReady(() =>
      natsTransport({ connection: customersNc, service: 'customers' }),
    );
    relay = customers.relay({ transport, pollIntervalMs: 20 });
    await relay.start();
    await consumerDb.db.query('CREATE TABLE seen (key text PRIMARY KEY, n int NOT NULL)');
    consumer = createBaton({ db: consumerDb.db, service: 'orders' })
      .consumer({
        name: 'orders-from-customers',
        source: await natsSource({ connection: ordersNc, service: 'customers' }),
        fetchWaitMs: 1_000,
      })
      .subscribe('customer.named', async (event, tx) => {
        await tx.query(
          'INSERT INTO seen (key, n) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET n = seen.n + 1',
          [event.key],
        );
      });
    await consumer.start();
  }, 120_000);

  afterAll(async () => {
    await consumer?.stop();
    await relay?.stop();
    await customersNc?.close();
    await ordersNc?.close();
    await cluster?.stop();
    await producerDb?.drop();
    await consumerDb?.drop();
  });

  const publishAtCustomers = (key: string) =>
    producerDb.db.transaction((tx) =>
      customers.publish(tx, { type: 'customer.named', key, payload: { name: key } }),
    );
  const seen = async () =>
    (await consumerDb.db.query<{ key: string; n: number }>('SELECT key, n FROM seen ORDER BY key'))
      .rows;

  it('carries customers’ events to orders under the recommended permissions', async () => {
    await publishAtCustomers('c1');
    await eventually(async () => (await seen()).length === 1, 'c1 handled at orders', 30_000);
    expect(await seen()).toEqual([{ key: 'c1', n: 1 }]);
  });

  it('refuses orders’ credentials publishing an event into customers’ stream', async () => {
    const before = (await (await jetstreamManager(customersNc)).streams.info(STREAM)).state
      .last_seq;
    const forged = encodeEventLine({
      seq: 2,
      id: '01900000-0000-7000-8000-00000000f0f0',
      type: 'customer.named',
      key: 'forged',
      version: 1,
      payload: { name: 'forged' },
      headers: {},
      occurredAt: new Date().toISOString(),
      source: 'customers',
    });
    await expect(
      jetstream(ordersNc, { timeout: 2_000 }).publish(
        subjectFor('customers', 'customer.named'),
        forged,
      ),
    ).rejects.toThrow();
    // A plain publish (no acknowledgement asked) is dropped by the server too.
    ordersNc.publish(subjectFor('customers', 'customer.named'), forged);
    await ordersNc.flush();
    await publishAtCustomers('c2');
    await eventually(async () => (await seen()).length === 2, 'c2 handled at orders', 30_000);
    const after = (await (await jetstreamManager(customersNc)).streams.info(STREAM)).state.last_seq;
    expect(after - before, 'only customers’ own event was stored').toBe(1);
    expect(await seen()).toEqual([
      { key: 'c1', n: 1 },
      { key: 'c2', n: 1 },
    ]);
    expect(refusals.some((r) => /orders: .*permissions violation.*baton\.customers/i.test(r))).toBe(
      true,
    );
  });

  it('refuses orders’ credentials announcing customers’ head or answering its repairs', async () => {
    ordersNc.publish('baton-control.customers.head', JSON.stringify({ seq: 1_000_000 }));
    const answering = ordersNc.subscribe('baton-control.customers.repair');
    await ordersNc.flush();
    await eventually(
      async () =>
        refusals.some((r) =>
          /orders: .*permissions violation.*baton-control\.customers\.head/i.test(r),
        ) &&
        refusals.some((r) =>
          /orders: .*permissions violation.*baton-control\.customers\.repair/i.test(r),
        ),
      'both refused by the server',
      10_000,
    );
    answering.unsubscribe();
    // Nothing reached orders' subscription as a head: events still flow, none asked again.
    await publishAtCustomers('c3');
    await eventually(async () => (await seen()).length === 3, 'c3 handled at orders', 30_000);
  });

  it('refuses orders’ credentials reading a stream it was not given', async () => {
    // Another service's stream, with an event in it (made by an operator's account).
    const adminNc = await connect({
      servers: cluster.servers,
      user: 'admin',
      pass: PASSWORD.admin,
    });
    try {
      const admin = await jetstreamManager(adminNc);
      const loyalty = streamName('loyalty');
      await admin.streams.add({ name: loyalty, subjects: ['baton.loyalty.>'], num_replicas: 3 });
      await jetstream(adminNc).publish('baton.loyalty.points.moved', '{}');
      expect((await admin.streams.getMessage(loyalty, { seq: 1 }))?.seq).toBe(1);
      const orders = await jetstreamManager(ordersNc, { timeout: 2_000 });
      await expect(orders.streams.info(loyalty)).rejects.toThrow();
      await expect(orders.streams.getMessage(loyalty, { seq: 1 })).rejects.toThrow();
      await expect(
        natsSource({ connection: ordersNc, service: 'loyalty' }).then((source) =>
          source.fetch({
            cursor: undefined,
            limit: 10,
            waitMs: 1_000,
            types: [],
            signal: new AbortController().signal,
          }),
        ),
      ).rejects.toThrow();
    } finally {
      await adminNc.close();
    }
  });
});
