import { type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { CursorExpiredError, InvalidInputError } from '../../core/errors.ts';
import { decodeEventLine } from '../http-feed/wire-format.ts';
import type { EventSource, FetchedBatch, FetchRequest, IncomingItem } from '../transport.ts';
import { MAX_REPAIR_RANGE } from './nats-transport.ts';
import { controlSubject, streamName } from './stream-names.ts';
import { StreamReader } from './stream-reader.ts';

export interface NatsSourceOptions {
  /** A connection to the cluster; the caller owns it. */
  connection: NatsConnection;
  /** The producing service whose stream is read. */
  service: string;
  /** Largest event accepted (bytes of its line); larger ones become dead letters. Default 1 MiB. */
  maxEventBytes?: number;
  /** How long a gap may stay open before the producer is asked to send it again. Default 3 s. */
  repairAfterMs?: number;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A subscription's reader of another service's JetStream stream
 * (`baton.consumer({ source: natsSource(…) })`). The cursor — stored with
 * the inbox rows, so the database and not the broker says how far it read —
 * is `<stream sequence>@<feed position>`: where to read on in the stream,
 * and the producer's position up to which every event was handed on. The
 * inbox stays the exactly-once point.
 *
 * Events are handed on in the producer's feed order (`seq`, gap-free), not
 * merely in stream order: a message the stream holds twice is skipped, one
 * stored out of order is held until the events before it have come. A gap
 * is never skipped. The broker may lose acknowledged messages (Jepsen,
 * NATS 2.12.1), and an operator may delete some: a gap that stays open for
 * `repairAfterMs` — between what was handed on and a held event, or up to
 * the position the producer announces it dispatched (its head, which finds
 * a lost tail) — is asked for again (`baton-control.<service>.repair`), and the
 * producer's relay publishes it again from its outbox. What the outbox no
 * longer holds is reported as an expired cursor (`baton consumers list`
 * shows it; `baton consumers reset --to-oldest` goes on past the loss and
 * records it), never skipped silently.
 */
export async function natsSource(options: NatsSourceOptions): Promise<EventSource> {
  const stream = streamName(options.service);
  const nc = options.connection;
  const js = jetstream(nc);
  // No API check now: a subscription starts while the cluster is down (its fetches retry).
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const maxEventBytes = options.maxEventBytes ?? 1024 * 1024;
  const reader = new StreamReader(js, stream);
  const repairAfterMs = options.repairAfterMs ?? 3_000;
  let head = 0;
  const heads = nc.subscribe(controlSubject(options.service, 'head'), {
    callback: (error, message) => {
      if (error) return;
      try {
        const seq = (JSON.parse(Buffer.from(message.data).toString('utf8')) as { seq?: unknown })
          .seq;
        if (Number.isSafeInteger(seq)) head = Math.max(head, seq as number);
      } catch {} // not the producer's announcement: ignored
    },
  });
  const gap = { at: -1, since: 0, asked: 0 };
  /** Events sent again for a gap, read directly where they landed (by feed position). */
  const patches = new Map<number, IncomingItem>();

  /** Asks the producer for a gap that stayed open; throws CursorExpiredError for what it no longer has. */
  async function repair(lastSeq: number, to: number, cursor: string, resumeAt: number) {
    const now = Date.now();
    if (gap.at !== lastSeq) Object.assign(gap, { at: lastSeq, since: now, asked: 0 });
    if (now - gap.since < repairAfterMs || now - gap.asked < repairAfterMs) return;
    gap.asked = now;
    const from = lastSeq + 1;
    let answer: {
      republished?: number;
      prunedThrough?: number;
      at?: { seq?: unknown; streamSeq?: unknown }[];
    };
    try {
      const reply = await nc.request(
        controlSubject(options.service, 'repair'),
        JSON.stringify({ from, to: Math.min(to, from + MAX_REPAIR_RANGE - 1) }),
        { timeout: 5_000 },
      );
      answer = JSON.parse(Buffer.from(reply.data).toString('utf8'));
    } catch {
      return; // the producer is not there now: asked again later
    }
    const pruned = answer.prunedThrough;
    if (Number.isSafeInteger(pruned) && (pruned as number) >= from)
      throw new CursorExpiredError(cursor, `${resumeAt}@${pruned}`);
    // The copies landed at the end of the stream, perhaps far past what the next
    // fetches read: take each from where it landed.
    patches.clear();
    for (const { seq, streamSeq } of Array.isArray(answer.at)
      ? answer.at.slice(0, MAX_REPAIR_RANGE)
      : []) {
      if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(streamSeq)) continue;
      const stored = await jsm.streams
        .getMessage(stream, { seq: streamSeq as number })
        .catch(() => null);
      const item = stored ? decode(stored.data, streamSeq as number, maxEventBytes) : undefined;
      if (item?.event && Number(item.position) === seq) patches.set(seq as number, item);
    }
  }

  return {
    name: options.service,
    async fetch(request: FetchRequest): Promise<FetchedBatch> {
      const at = parseCursor(request.cursor);
      const after = at.streamSeq;
      let lastSeq = at.eventSeq ?? (await eventSeqAt(jsm, stream, after, maxEventBytes));
      const messages = await reader.read(after + 1, request.limit, request.waitMs, request.signal);
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
        // Hand on what follows on: held events, and repaired ones read where they landed.
        for (;;) {
          const patch = patches.get(lastSeq + 1);
          if (held[0] && held[0].seq <= lastSeq + 1) {
            const next = held.shift() as { seq: number; item: IncomingItem };
            if (next.seq === lastSeq + 1 && (!types || types.has(next.item.event?.type ?? '')))
              items.push(next.item);
            lastSeq = Math.max(lastSeq, next.seq);
          } else if (patch && held.length > 0) {
            if (!types || types.has(patch.event?.type ?? '')) items.push(patch);
            patches.delete(lastSeq + 1);
            lastSeq += 1;
          } else break;
        }
        if (held.length === 0) cursor = message.seq;
      }
      const next = `${cursor}@${lastSeq}`;
      // A gap: before a held event, or — at the end of the stream — up to the producer's head.
      const missingTo = held[0] ? held[0].seq - 1 : messages.length < request.limit ? head : 0;
      if (missingTo > lastSeq && items.length === 0) {
        await repair(lastSeq, missingTo, request.cursor ?? next, cursor);
        // Nothing to hand on while the gap is open: wait a little rather than re-read at once.
        if (messages.length > 0) await pause(Math.min(request.waitMs, 500), request.signal);
      }
      return { items, cursor: next };
    },
    // A stopped consumer's reader stops pulling ahead and forgets what it held.
    pause: () => reader.close(),
    close: async () => {
      heads.unsubscribe();
      await reader.close();
    },
  };
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** `<stream seq>@<feed position>`, or a bare stream sequence (position read from the stream). */
function parseCursor(cursor: string | undefined): {
  streamSeq: number;
  eventSeq: number | undefined;
} {
  if (cursor === undefined) return { streamSeq: 0, eventSeq: 0 };
  const match = /^(\d{1,15})(?:@(\d{1,15}))?$/.exec(cursor);
  if (!match)
    throw new InvalidInputError(
      `cursor "${cursor}" is not a NATS stream cursor (<stream sequence>@<feed position>): was this subscription reading another transport? Reset it (\`baton consumers reset\`).`,
    );
  return {
    streamSeq: Number(match[1]),
    eventSeq: match[2] === undefined ? undefined : Number(match[2]),
  };
}

/** The feed position reached at a stream sequence, read from the message there (after a restart). */
async function eventSeqAt(
  jsm: JetStreamManager,
  stream: string,
  streamSeq: number,
  maxEventBytes: number,
): Promise<number> {
  if (streamSeq === 0) return 0;
  const stored = await jsm.streams.getMessage(stream, { seq: streamSeq });
  const item = stored ? decode(stored.data, streamSeq, maxEventBytes) : undefined;
  return item?.event ? Number(item.position) : 0;
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
