import {
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  StorageType,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { InvalidInputError, TransportError } from '../../core/errors.ts';
import { encodeEventLine } from '../http-feed/wire-format.ts';
import type { OutboxReader, SequencedEvent, Transport } from '../transport.ts';
import { controlSubject, streamName, subjectFor, subjectPrefix } from './stream-names.ts';

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
  /** How often the relay announces how far it dispatched (subscribers find a lost tail by it). Default 2 s. */
  headEveryMs?: number;
}

/** The most positions one repair request may ask for (a bigger gap is asked for in parts). */
export const MAX_REPAIR_RANGE = 10_000;

const NS_PER_MS = 1_000_000;

/**
 * The relay's push transport to NATS JetStream (`baton.relay({ transport })`):
 * each batch of numbered events is published to the service's stream — one
 * message per event, its id the message id (JetStream's duplicate window
 * drops a batch sent again after a crash between publish and bookkeeping),
 * its body the same event line the HTTP feed serves (envelope and `seq`).
 * `send` resolves only when the stream acknowledged every message; the relay
 * records the batch as dispatched only then, in the same transaction that
 * numbered it. The stream is created (or its subjects checked) at once if
 * the cluster answers — a stream name another application owns is an error
 * then — and otherwise before the first batch: a service starts while the
 * cluster is down (its relay retries until it is back).
 */
export async function natsTransport(options: NatsTransportOptions): Promise<Transport> {
  const stream = streamName(options.service);
  const jsm = await jetstreamManager(options.connection, { checkAPI: false });
  let ensured: Promise<void> | undefined;
  const ensure = () => {
    ensured ??= ensureStream(jsm, stream, options).catch((error) => {
      ensured = undefined;
      throw error;
    });
    return ensured;
  };
  try {
    await ensure();
  } catch (error) {
    if (error instanceof InvalidInputError) throw error;
  }
  const js = jetstream(options.connection, { timeout: options.ackTimeoutMs ?? 10_000 });
  let repairs: Repairs | undefined;
  return {
    name: `nats ${stream}`,
    attach(outbox) {
      repairs = answerRepairs(options, outbox, (events, attempt) =>
        Promise.all(
          events.map((event) =>
            js
              .publish(subjectFor(options.service, event.type), encodeEventLine(event), {
                // Not the event id: JetStream may still remember it (a message deleted
                // within the duplicate window) and would drop the repair.
                msgID: `${event.id}:repair:${attempt}`,
                expect: { streamName: stream },
              })
              .then((ack) => ({ seq: event.seq, streamSeq: ack.seq })),
          ),
        ),
      );
    },
    async detach() {
      await repairs?.stop();
      repairs = undefined;
    },
    async send(events: readonly SequencedEvent[]) {
      await ensure();
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

interface Repairs {
  stop(): Promise<void>;
}

/**
 * The producer's side of repairing a broker's loss: answers subscribers'
 * requests (`baton-control.<service>.repair`, NATS request/reply) to publish a range
 * of positions again from the outbox — or says which part was pruned — and
 * announces every `headEveryMs` the last position dispatched
 * (`baton-control.<service>.head`), by which a subscriber finds lost events at the
 * end of the stream. Neither subject is stored in the stream.
 */
function answerRepairs(
  options: NatsTransportOptions,
  outbox: OutboxReader,
  /** Publishes the events again; says where each landed in the stream. */
  publish: (
    events: SequencedEvent[],
    attempt: string,
  ) => Promise<{ seq: number; streamSeq: number }[]>,
): Repairs {
  const nc = options.connection;
  let attempts = 0;
  const subscription = nc.subscribe(controlSubject(options.service, 'repair'), {
    callback: (error, message) => {
      if (error) return;
      void (async () => {
        const range = repairRange(message.data);
        if (!range)
          return message.respond(
            JSON.stringify({
              error: 'send {"from":n,"to":m}, 1 ≤ n ≤ m, at most 10,000 positions',
            }),
          );
        try {
          const { events, prunedThrough } = await outbox.read(range.from, range.to);
          // Where each copy landed: at the end of the stream, maybe far past the
          // subscriber's window — it reads them there directly.
          const at = events.length > 0 ? await publish(events, `${Date.now()}-${++attempts}`) : [];
          message.respond(JSON.stringify({ republished: events.length, prunedThrough, at }));
        } catch (failure) {
          message.respond(JSON.stringify({ error: (failure as Error).message }));
        }
      })();
    },
  });
  const announce = async () => {
    try {
      nc.publish(
        controlSubject(options.service, 'head'),
        JSON.stringify({ seq: await outbox.dispatchedThrough() }),
      );
    } catch {} // the database or the connection is down: the next tick tries again
  };
  const timer = setInterval(() => void announce(), options.headEveryMs ?? 2_000);
  timer.unref();
  void announce();
  return {
    async stop() {
      clearInterval(timer);
      subscription.unsubscribe();
    },
  };
}

function repairRange(data: Uint8Array): { from: number; to: number } | undefined {
  try {
    const { from, to } = JSON.parse(Buffer.from(data).toString('utf8')) as {
      from?: unknown;
      to?: unknown;
    };
    if (
      Number.isSafeInteger(from) &&
      Number.isSafeInteger(to) &&
      (from as number) >= 1 &&
      (to as number) >= (from as number) &&
      (to as number) - (from as number) < MAX_REPAIR_RANGE
    )
      return { from: from as number, to: to as number };
  } catch {}
  return undefined;
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
