import type { BatonEvent } from '../core/event.ts';

/** An event with its feed position, as the relay hands it out. */
export interface SequencedEvent extends BatonEvent {
  /** Position in the producer's feed: gap-free, increasing, in commit order. */
  seq: number;
}

/**
 * Where the relay hands events (producer side).
 *
 * Pull transports (the HTTP feed) need no `send`: sequencing the outbox *is*
 * publishing, and subscribers read the feed. Push transports (NATS JetStream)
 * implement `send`: it must resolve only when the broker durably accepted
 * every event, and must be idempotent per `event.id` (the relay re-sends after
 * a crash between send and bookkeeping). Per-key order: events arrive in
 * `seq` order and events of one key must stay in that order (e.g. a subject
 * partitioned by a hash of `key`).
 */
export interface Transport {
  readonly name: string;
  send?(events: readonly SequencedEvent[]): Promise<void>;
  /**
   * Push transports that repair a broker's loss: the relay hands over its
   * reader of the outbox when it starts (and takes it back when it stops), so
   * the transport can send a range of positions again when a subscriber finds
   * them missing, and announce how far the relay has dispatched.
   */
  attach?(outbox: OutboxReader): void;
  detach?(): Promise<void>;
  close?(): Promise<void>;
}

/** The relay's outbox, as a push transport may read it. */
export interface OutboxReader {
  /**
   * The dispatched events of positions `from` to `to` (inclusive) still in
   * the outbox, in order; positions at or below `prunedThrough` are gone.
   */
  read(from: number, to: number): Promise<{ events: SequencedEvent[]; prunedThrough: number }>;
  /** The last position the relay handed to the transport. */
  dispatchedThrough(): Promise<number>;
}

/** One item a source delivers: a decoded event, or what could not be decoded and why. */
export type IncomingItem =
  | { position: string; event: BatonEvent; problem?: undefined; raw?: undefined }
  | { position: string; event?: undefined; problem: string; raw: string };

export interface FetchRequest {
  /** Opaque position after which to read; undefined = from the beginning. */
  cursor: string | undefined;
  limit: number;
  /** Long-poll: how long the source may wait for new events before answering empty. */
  waitMs: number;
  /** Only these event types (the source may still send others; they become dead letters). */
  types: readonly string[];
  signal: AbortSignal;
}

export interface FetchedBatch {
  items: IncomingItem[];
  /** The cursor to store once these items are committed to the inbox. */
  cursor: string;
}

/**
 * Where a consumer reads events from (consumer side). The consumer stores the
 * returned cursor in the same transaction as the inbox rows, so a crash
 * between fetch and commit re-reads the same items (deduplicated by id).
 */
export interface EventSource {
  /** Stable name of the source (e.g. the producing service), recorded with the subscription. */
  readonly name: string;
  fetch(request: FetchRequest): Promise<FetchedBatch>;
  /**
   * The consumer stopped reading (it may start again): let go of what is
   * held or read ahead for it, so a later fetch reads afresh.
   */
  pause?(): Promise<void>;
  close?(): Promise<void>;
}

/**
 * The producer's feed position a subscription's cursor stands for: the
 * cursor itself for the HTTP feed (a whole number), the part after `@` for a
 * NATS stream cursor (`<stream sequence>@<feed position>`). What the
 * caretaker's cut and a cursor reset compare.
 */
export function feedPositionOf(cursor: string): string {
  const at = cursor.lastIndexOf('@');
  return at === -1 ? cursor : cursor.slice(at + 1);
}
