/**
 * `baton/nats`: NATS JetStream as the transport between services, beside the
 * HTTP feed. Needs `@nats-io/transport-node` and `@nats-io/jetstream` (v3),
 * optional peer dependencies of Baton: install them to use this face.
 *
 *   const nc = await connect({ servers });
 *   baton.relay({ transport: await natsTransport({ connection: nc, service: 'customers' }) });
 *   baton.consumer({ name: 'orders-from-customers', source: await natsSource({ connection: nc, service: 'customers' }) });
 */
export { type NatsSourceOptions, natsSource } from './transports/nats/nats-source.ts';
export { type NatsTransportOptions, natsTransport } from './transports/nats/nats-transport.ts';
export { streamName, subjectFor } from './transports/nats/stream-names.ts';
