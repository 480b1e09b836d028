import {
  type Consumer,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { decodeEventLine } from '../http-feed/wire-format.ts';
import type { EventSource, FetchedBatch, FetchRequest, IncomingItem } from '../transport.ts';
import { streamName } from './stream-names.ts';

export interface NatsSourceOptions {
  /** A connection to the cluster; the caller owns it. */
  connection: NatsConnection;
  /** The producing service whose stream is read. */
  service: string;
  /** Largest event accepted (bytes of its line); larger ones become dead letters. Default 1 MiB. */
  maxEventBytes?: number;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A subscription's reader of another service's JetStream stream
 * (`baton.consumer({ source: natsSource(…) })`). The cursor is the stream
 * sequence of the last message taken; the subscription stores it with the
 * inbox rows, so the database — not the broker — says how far it read, and
 * the inbox stays the exactly-once point.
 *
 * Events are handed on in the producer's feed order (`seq`, gap-free), not
 * merely in stream order: a message the stream holds twice (a batch the
 * relay sent again past the duplicate window) is skipped, and one stored
 * out of order (a publish lost in a leader change, stored when the batch was
 * sent again) is held back until the events before it have come. The cursor
 * only moves past messages whose events were all handed on; a gap that does
 * not fill stops the subscription at it (visible as lag) rather than skip.
 */
export async function natsSource(options: NatsSourceOptions): Promise<EventSource> {
  const stream = streamName(options.service);
  const js = jetstream(options.connection);
  const jsm = await jetstreamManager(options.connection);
  const maxEventBytes = options.maxEventBytes ?? 1024 * 1024;
  const reader = new StreamReader(js, jsm, stream);

  return {
    name: options.service,
    async fetch(request: FetchRequest): Promise<FetchedBatch> {
      const after = request.cursor === undefined ? 0 : Number(request.cursor);
      let lastSeq = await reader.eventSeqAt(after, maxEventBytes);
      const messages = await reader.read(after + 1, request.limit, request.waitMs);
      const types = request.types.length > 0 ? new Set(request.types) : undefined;
      const items: IncomingItem[] = [];
      const held: { seq: number; item: IncomingItem }[] = [];
      let cursor = after;
      for (const message of messages) {
        const item = decode(message.data, message.seq, maxEventBytes);
        const seq = item.event ? Number(item.position) : undefined;
        if (seq === undefined) {
          // Not an event at all: a dead letter in its place, if nothing is held before it.
          if (held.length === 0) {
            items.push(item);
            cursor = message.seq;
          }
          continue;
        }
        if (seq <= lastSeq) {
          if (held.length === 0) cursor = message.seq; // a copy of one handed on already
          continue;
        }
        held.push({ seq, item });
        held.sort((a, b) => a.seq - b.seq);
        while (held[0] && held[0].seq <= lastSeq + 1) {
          const next = held.shift() as { seq: number; item: IncomingItem };
          if (next.seq === lastSeq + 1 && (!types || types.has(next.item.event?.type ?? '')))
            items.push(next.item);
          lastSeq = Math.max(lastSeq, next.seq);
        }
        if (held.length === 0) cursor = message.seq;
      }
      reader.remember(cursor, lastSeq);
      return { items, cursor: String(cursor) };
    },
    close: async () => reader.close(),
  };
}

interface RawMessage {
  seq: number;
  data: Uint8Array;
}

/** Reads the stream from a sequence, keeping one ordered consumer while reads follow on. */
class StreamReader {
  private consumer: Consumer | undefined;
  private nextSeq = -1;
  /** Feed position (`seq`) of the event at a stream sequence, for cursors handed out by this process. */
  private readonly known = new Map<number, number>();

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
  ) {}

  async read(from: number, limit: number, waitMs: number): Promise<RawMessage[]> {
    if (!this.consumer || this.nextSeq !== from) {
      this.consumer = await this.js.consumers.get(this.stream, {
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: from,
      });
    }
    const batch = await this.consumer.fetch({
      max_messages: limit,
      expires: Math.max(waitMs, 1_000),
    });
    const messages: RawMessage[] = [];
    for await (const m of batch) messages.push({ seq: m.seq, data: m.data });
    this.nextSeq = (messages.at(-1)?.seq ?? from - 1) + 1;
    return messages;
  }

  remember(streamSeq: number, eventSeq: number): void {
    this.known.clear();
    this.known.set(streamSeq, eventSeq);
  }

  /** The feed position reached at a cursor: remembered, else read from the message there (after a restart). */
  async eventSeqAt(streamSeq: number, maxEventBytes: number): Promise<number> {
    if (streamSeq === 0) return 0;
    const known = this.known.get(streamSeq);
    if (known !== undefined) return known;
    const stored = await this.jsm.streams.getMessage(this.stream, { seq: streamSeq });
    const item = stored ? decode(stored.data, streamSeq, maxEventBytes) : undefined;
    return item?.event ? Number(item.position) : 0;
  }

  async close(): Promise<void> {
    this.consumer = undefined;
  }
}

function decode(data: Uint8Array, streamSeq: number, maxEventBytes: number): IncomingItem {
  const position = `nats:${streamSeq}`;
  let line: string;
  try {
    line = strictUtf8.decode(data);
  } catch {
    return {
      position,
      problem: 'event is not valid UTF-8',
      raw: Buffer.from(data).toString('utf8'),
    };
  }
  return decodeEventLine(line, position, maxEventBytes);
}
