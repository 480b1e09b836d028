import {
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  StorageType,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { InvalidInputError, TransportError } from '../../core/errors.ts';
import { encodeEventLine } from '../http-feed/wire-format.ts';
import type { SequencedEvent, Transport } from '../transport.ts';
import { streamName, subjectFor, subjectPrefix } from './stream-names.ts';

export interface NatsTransportOptions {
  /** A connection to the cluster (`connect` from `@nats-io/transport-node`); the caller owns it. */
  connection: NatsConnection;
  /** The producing service: its stream is `BATON_<SERVICE>`, its subjects `baton.<service>.<type>`. */
  service: string;
  /** Copies of each message in the cluster (file storage). Default 3. */
  replicas?: number;
  /** JetStream drops a message whose id it saw this recently: a re-sent batch is not stored twice. Default 2 min. */
  duplicateWindowMs?: number;
  /** How long the stream keeps events (consumers further behind read the outbox's retention instead). Default 7 days. */
  maxAgeMs?: number;
  /** How long to wait for the stream's acknowledgement of a batch. Default 10 s. */
  ackTimeoutMs?: number;
}

const NS_PER_MS = 1_000_000;

/**
 * The relay's push transport to NATS JetStream (`baton.relay({ transport })`):
 * each batch of numbered events is published to the service's stream — one
 * message per event, its id the message id (JetStream's duplicate window
 * drops a batch sent again after a crash between publish and bookkeeping),
 * its body the same event line the HTTP feed serves (envelope and `seq`).
 * `send` resolves only when the stream acknowledged every message; the relay
 * records the batch as dispatched only then, in the same transaction that
 * numbered it. The stream is created (or its subjects checked) on start.
 */
export async function natsTransport(options: NatsTransportOptions): Promise<Transport> {
  const stream = streamName(options.service);
  const jsm = await jetstreamManager(options.connection);
  await ensureStream(jsm, stream, options);
  const js = jetstream(options.connection, { timeout: options.ackTimeoutMs ?? 10_000 });
  return {
    name: `nats ${stream}`,
    async send(events: readonly SequencedEvent[]) {
      // Published back to back on one connection (the stream stores them in this
      // order), then every acknowledgement awaited: one round trip per batch.
      const acks = events.map((event) =>
        js.publish(subjectFor(options.service, event.type), encodeEventLine(event), {
          msgID: event.id,
          expect: { streamName: stream },
        }),
      );
      const settled = await Promise.allSettled(acks);
      const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (failed)
        throw new TransportError(
          `JetStream did not acknowledge every event of the batch (stream ${stream}): ${(failed.reason as Error)?.message ?? String(failed.reason)}. The relay sends the batch again (duplicates are dropped by message id).`,
          { code: 'BATON_NATS_UNACKED', retryable: true, cause: failed.reason },
        );
    },
  };
}

/** Creates the service's stream, or checks that an existing one takes its subjects. */
async function ensureStream(
  jsm: JetStreamManager,
  stream: string,
  options: NatsTransportOptions,
): Promise<void> {
  const subjects = [`${subjectPrefix(options.service)}.>`];
  const replicas = options.replicas ?? 3;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5)
    throw new InvalidInputError(
      `natsTransport: replicas must be 1 to 5 (got ${String(replicas)}).`,
    );
  try {
    const info = await jsm.streams.info(stream);
    if (!subjects.every((s) => info.config.subjects?.includes(s)))
      throw new InvalidInputError(
        `JetStream stream ${stream} exists but does not take ${subjects.join(', ')} (it takes ${info.config.subjects?.join(', ')}): another application owns that name; delete or rename it.`,
      );
    return;
  } catch (error) {
    if (error instanceof InvalidInputError) throw error;
    if (!/stream not found/i.test((error as Error).message)) throw error;
  }
  await jsm.streams.add({
    name: stream,
    subjects,
    storage: StorageType.File,
    num_replicas: replicas,
    duplicate_window: (options.duplicateWindowMs ?? 120_000) * NS_PER_MS,
    max_age: (options.maxAgeMs ?? 7 * 24 * 3_600_000) * NS_PER_MS,
  });
}
