import {
  type Consumer,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
} from '@nats-io/jetstream';

/**
 * A consumer that delivered nothing for this long is created anew on the
 * next read: after a node dies its consumer can be gone, and an idle
 * pull cannot tell that from a quiet stream (the library re-pulls, and
 * recreates the consumer only when the server reports it missing — a dead
 * node reports nothing). A quiet subscription pays one consumer creation
 * (and deletion) per interval.
 */
const RENEW_IDLE_MS = 5_000;

export interface RawMessage {
  seq: number;
  data: Uint8Array;
}

/**
 * Reads a stream from a sequence for one subscription: one ordered consumer
 * that keeps pulling while reads follow on where the last one ended, its
 * messages gathered in a small buffer that each read takes from.
 *
 * Why not one `fetch` per read: a JetStream fetch ends when it has
 * `max_messages` or when it expires, so at 1,000 events/s a fetch of 1,000
 * held the first event about a second (the benchmark measured p50 1.2 s).
 * Here a read returns as soon as it has what the stream holds now (the
 * last message arrived says none are pending after it) or `limit` of it,
 * or, with less, when the wait ends. An ordered consumer
 * counts a message as delivered when it arrives, so a pull is never cut
 * short while it delivers; instead the consumer pulls on and the buffer
 * keeps what came — bounded: with two reads' worth held the pull is ended
 * and the consumer deleted, and the next read starts a new one after what
 * is held.
 */
export class StreamReader {
  /** The consumer pulling now, and its messages; undefined while none pulls (not started, or paused full). */
  private consumer: Consumer | undefined;
  private messages: ConsumerMessages | undefined;
  private pulling: Promise<void> | undefined;
  /** Where the next read is expected to start (the stream sequence after the last one handed out). */
  private nextSeq = -1;
  private buffer: RawMessage[] = [];
  private failure: unknown;
  private arrived: (() => void) | undefined;
  private limit = 100;
  /** Messages the stream held after the last one that arrived (JetStream tells with each). */
  private pendingAfterLast = 0;
  private lastArrivalAt = 0;

  constructor(
    private readonly js: JetStreamClient,
    private readonly stream: string,
  ) {}

  /** Up to `limit` messages from stream sequence `from` on; waits up to `waitMs` for the first. */
  async read(
    from: number,
    limit: number,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<RawMessage[]> {
    const idle = this.buffer.length === 0 && Date.now() - this.lastArrivalAt > RENEW_IDLE_MS;
    if (this.nextSeq !== from || idle) {
      // Elsewhere than where the last read ended (a rollback, a reset, another process), or quiet.
      this.discard();
      await this.pullFrom(from, limit);
    } else if (!this.messages && this.failure === undefined) {
      // Paused while full, or never started: pull on after what is held.
      await this.pullFrom((this.buffer.at(-1)?.seq ?? from - 1) + 1, limit);
    }
    const ready = () =>
      this.failure !== undefined ||
      this.buffer.length >= limit ||
      (this.buffer.length > 0 && this.pendingAfterLast === 0);
    if (!ready()) await this.until(ready, waitMs, signal);
    if (this.failure !== undefined && this.buffer.length === 0) {
      const failure = this.failure;
      this.discard(); // the next read starts a fresh consumer where this one ended
      throw failure;
    }
    const taken = this.buffer.splice(0, limit);
    this.nextSeq = (taken.at(-1)?.seq ?? from - 1) + 1;
    return taken;
  }

  async close(): Promise<void> {
    this.discard();
    await this.pulling;
  }

  private async pullFrom(seq: number, limit: number): Promise<void> {
    this.limit = limit;
    this.nextSeq = this.buffer[0]?.seq ?? seq;
    this.lastArrivalAt = Date.now();
    const consumer = await this.js.consumers.get(this.stream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: seq,
    });
    const messages = await consumer.consume({ max_messages: limit, expires: RENEW_IDLE_MS });
    this.consumer = consumer;
    this.messages = messages;
    this.pulling = this.pull(messages);
  }

  private async pull(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const m of messages) {
        if (this.messages !== messages) return;
        this.buffer.push({ seq: m.seq, data: m.data });
        this.pendingAfterLast = m.info.pending;
        this.lastArrivalAt = Date.now();
        this.arrived?.();
        // Bounded: with two reads' worth held, stop pulling altogether (a paused
        // iterator would still queue the library's re-pulls); a read resumes after them.
        if (this.buffer.length >= 2 * this.limit) {
          this.stopPulling();
          return;
        }
      }
      if (this.messages === messages)
        this.failure = new Error(`the stream ${this.stream} stopped delivering`);
    } catch (error) {
      if (this.messages === messages) this.failure = error;
    } finally {
      this.arrived?.();
    }
  }

  /** Resolves when `ready()` holds after an arrival, after `ms`, or on abort. */
  private until(ready: () => boolean, ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.arrived = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.arrived = () => {
        if (ready()) done();
      };
    });
  }

  /**
   * Ends the current pull, keeping what is held. The consumer is deleted on
   * the server (else each would linger, with its outstanding pull, for the
   * library's 5-minute inactivity threshold); what arrived after the stop is
   * read again by the next consumer, which starts after what is held.
   */
  private stopPulling(): void {
    const { messages, consumer } = this;
    this.messages = undefined;
    this.consumer = undefined;
    messages?.stop();
    consumer?.delete().catch(() => {}); // gone already, or the cluster is down: it expires
  }

  /** Stops pulling and forgets what is held. */
  private discard(): void {
    this.stopPulling();
    this.buffer = [];
    this.pendingAfterLast = 0;
    this.failure = undefined;
  }
}
