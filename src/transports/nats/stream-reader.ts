import { type ConsumerMessages, DeliverPolicy, type JetStreamClient } from '@nats-io/jetstream';

/**
 * A consumer that delivered nothing for this long is created anew on the
 * next read: after a node dies its consumer can be gone, and an idle
 * pull cannot tell that from a quiet stream (the library's own heartbeat
 * check re-pulls but does not recreate it). A quiet subscription pays one
 * consumer creation per interval.
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
 * short (what arrived after it would be lost to the reader); instead the
 * consumer pulls on and the buffer keeps what came — bounded: the pulling
 * pauses while it holds two reads' worth.
 */
export class StreamReader {
  private messages: ConsumerMessages | undefined;
  private pulling: Promise<void> | undefined;
  private nextSeq = -1;
  private buffer: RawMessage[] = [];
  private failure: unknown;
  private arrived: (() => void) | undefined;
  private drained: (() => void) | undefined;
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
    if (!this.messages || this.nextSeq !== from || idle) await this.restart(from, limit);
    const ready = () =>
      this.failure !== undefined ||
      this.buffer.length >= limit ||
      (this.buffer.length > 0 && this.pendingAfterLast === 0);
    if (!ready()) await this.until(ready, waitMs, signal);
    if (this.failure !== undefined && this.buffer.length === 0) {
      const failure = this.failure;
      await this.stop(); // the next read starts a fresh consumer where this one ended
      throw failure;
    }
    const taken = this.buffer.splice(0, limit);
    this.nextSeq = (taken.at(-1)?.seq ?? from - 1) + 1;
    if (this.buffer.length < this.limit) this.drained?.();
    return taken;
  }

  async close(): Promise<void> {
    await this.stop();
  }

  private async restart(from: number, limit: number): Promise<void> {
    await this.stop();
    this.limit = limit;
    this.nextSeq = from;
    this.lastArrivalAt = Date.now();
    const consumer = await this.js.consumers.get(this.stream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
    });
    const messages = await consumer.consume({ max_messages: limit, expires: RENEW_IDLE_MS });
    this.messages = messages;
    this.pulling = this.pull(messages);
  }

  private async pull(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const m of messages) {
        this.buffer.push({ seq: m.seq, data: m.data });
        this.pendingAfterLast = m.info.pending;
        this.lastArrivalAt = Date.now();
        this.arrived?.();
        // Bounded: wait while two reads' worth are held (the consumer's own pull stops too).
        while (this.buffer.length >= 2 * this.limit && this.messages === messages)
          await new Promise<void>((resolve) => {
            this.drained = resolve;
          });
        if (this.messages !== messages) return;
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

  private async stop(): Promise<void> {
    const messages = this.messages;
    const pulling = this.pulling;
    this.messages = undefined;
    this.pulling = undefined;
    this.buffer = [];
    this.pendingAfterLast = 0;
    this.failure = undefined;
    this.drained?.();
    this.drained = undefined;
    if (messages) {
      messages.stop();
      await pulling;
    }
  }
}
