import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { natsTransport, streamName } from '../../src/nats.ts';
import type { Transport } from '../../src/transports/transport.ts';

/** How the producer hands its events on in a run: its HTTP feed, or a JetStream cluster. */
export type BenchTransport = { kind: 'http' } | { kind: 'nats'; servers: string[] };

/**
 * The producer's side of a NATS run: a connection and the relay's transport
 * for the service `service`, on a fresh stream (a stream left by an earlier
 * run holds events whose feed positions the new database would repeat).
 */
export async function natsProducer(
  servers: string[],
  service: string,
): Promise<{ connection: NatsConnection; transport: Transport }> {
  const connection = await connect({ servers });
  const jsm = await jetstreamManager(connection);
  await jsm.streams.delete(streamName(service)).catch(() => false); // none yet: fine
  return { connection, transport: await natsTransport({ connection, service }) };
}
