import type { StandardSchemaV1 } from '@standard-schema/spec';
import { type BackoffPolicy, backoffDelay, retryDelay } from '../core/backoff.ts';
import {
  BatonError,
  CursorExpiredError,
  InvalidInputError,
  TerminalError,
  TransportError,
} from '../core/errors.ts';
import type { BatonEvent } from '../core/event.ts';
import { validatePayload } from '../core/event-schemas.ts';
import { type Logger, silentLogger } from '../core/logger.ts';
import { check, withDefaults } from '../core/options.ts';
import { noTelemetry, type Telemetry } from '../core/telemetry.ts';
import { contextFromHeaders, inSpan, SpanKind } from '../core/tracing.ts';
import { WakeSignal } from '../core/wake-signal.ts';
import type { Database, Executor } from '../db/executor.ts';
import type { EventSource, FetchedBatch } from '../transports/transport.ts';
import { recordCursorExpired } from './cursor-expired.ts';
import { FetchGate } from './fetch-gate.ts';
import { type InboxEntry, InboxStore, toInboxRows } from './inbox.ts';
import type { DeadLetterMode } from './inbox-states.ts';

export interface HandlerContext {
  /** Failed attempts before this one. */
  attempt: number;
  subscription: string;
}

/**
 * Handles one event inside the transaction that also records it as handled.
 * Write through `tx` only: the effect then commits exactly once. Throw to
 * fail the attempt (retried with backoff); throw `TerminalError` to make it a
 * dead letter at once.
 */
export type EventHandler<P = unknown> = (
  event: BatonEvent<P>,
  tx: Executor,
  ctx: HandlerContext,
) => Promise<void>;

export interface ConsumerOptions {
  db: Database;
  schemaSql: string;
  /** Subscription name, unique within this database (e.g. `orders-from-customers`). */
  name: string;
  source: EventSource;
  /** Events fetched and ingested per transaction. */
  batchSize?: number;
  /** Events handled per transaction on the fast path. */
  handleBatchSize?: number;
  /** Long-poll wait per fetch. */
  fetchWaitMs?: number;
  /** Handler loops in this process (keys are spread over them); 0 runs none, leaving entries to ingest or to other processes. */
  concurrency?: number;
  /** Attempts before an event becomes a dead letter. */
  maxAttempts?: number;
  backoff?: BackoffPolicy;
  onDeadLetter?: DeadLetterMode;
  /**
   * Stop fetching while this many entries can be handled (backpressure).
   * Entries that wait behind a dead letter (`block-key`) or behind a failed
   * entry's retry do not count: they cannot run, and other keys must keep
   * flowing past them (`baton status` shows them as blocked).
   */
  maxPendingEntries?: number;
  /** Handled entries are deleted after this long. */
  retentionMs?: number;
  /**
   * Run the handlers of a fetched batch in the transaction that stores it,
   * for events whose key has nothing waiting (default true): one
   * transaction per batch and one inbox write per event. If any handler of
   * the batch throws, the whole batch is stored for the worker loops instead
   * (nothing of it applied), which retry and dead-letter event by event. Set
   * false for handlers that take long: the worker loops run keys in parallel.
   */
  handleOnIngest?: boolean;
  /**
   * Channel on which an operator's cursor reset (`baton consumers reset`,
   * `resetSubscriptionCursor`) NOTIFYs; the consumer LISTENs, cuts its
   * long-poll short and reads from the new cursor at once. `createBaton`
   * sets it. Without it a moved cursor is still noticed before the next
   * fetch (the cursor is re-read each time).
   */
  cursorChannel?: string;
  logger?: Logger;
  /** Where the consumer reports handler timings, retries and dead letters (the service's metrics). */
  telemetry?: Telemetry;
  random?: () => number;
}

export type CompiledConsumerOptions = Readonly<
  Required<Omit<ConsumerOptions, 'source' | 'db' | 'cursorChannel'>>
>;

const SUBSCRIPTION_NAME = /^[A-Za-z0-9_.:-]{1,200}$/;

/** A consumer's options, defaults applied key by key, checked, frozen. */
export function compileConsumerOptions(options: ConsumerOptions): CompiledConsumerOptions {
  if (!SUBSCRIPTION_NAME.test(options.name ?? '')) {
    throw new InvalidInputError(
      `subscription name "${options.name}" must be 1–200 letters, digits, '.', '_', ':' or '-'.`,
    );
  }
  const part = `consumer ${options.name}`;
  const { source: _source, db: _db, cursorChannel: _channel, ...given } = options;
  const o = withDefaults<CompiledConsumerOptions>(given, {
    name: options.name,
    schemaSql: options.schemaSql,
    batchSize: 500,
    handleBatchSize: 100,
    fetchWaitMs: 10_000,
    concurrency: 2,
    maxAttempts: 10,
    backoff: { baseMs: 200, maxMs: 60_000 },
    onDeadLetter: 'block-key',
    maxPendingEntries: 20_000,
    retentionMs: 7 * 24 * 3600_000,
    handleOnIngest: true,
    logger: silentLogger,
    telemetry: noTelemetry,
    random: Math.random,
  });
  check.integer(part, 'batchSize', o.batchSize, 1, 100_000);
  check.integer(part, 'handleBatchSize', o.handleBatchSize, 1, 100_000);
  // 0: no worker loops here (entries are handled on ingest, or by another process's workers)
  check.integer(part, 'concurrency', o.concurrency, 0, 1_000);
  check.integer(part, 'maxAttempts', o.maxAttempts, 1);
  check.integer(part, 'maxPendingEntries', o.maxPendingEntries, 1);
  check.ms(part, 'fetchWaitMs', o.fetchWaitMs);
  check.ms(part, 'retentionMs', o.retentionMs);
  check.oneOf(part, 'onDeadLetter', o.onDeadLetter, ['block-key', 'skip']);
  check.flag(part, 'handleOnIngest', o.handleOnIngest);
  return Object.freeze(o);
}

/** How often a consumer whose cursor the producer refused (410) looks again. */
const EXPIRED_POLL_MS = 2_000;

interface Subscription {
  handler: EventHandler;
  schema: StandardSchemaV1 | undefined;
}

/**
 * Pulls events from one source into the inbox and runs the subscribed
 * handlers, exactly once in effect, in per-key order.
 *
 * Guarantees:
 * - The cursor and the inbox rows it covers commit in one transaction; a
 *   crash before that commit re-reads the same events, and the inbox
 *   deduplicates by event id.
 * - A handler's writes and the "handled" mark commit in one transaction.
 * - Only the oldest open entry of a key is ever handed to a handler, so a
 *   key's events are handled in feed order by any number of workers and
 *   processes; different keys proceed in parallel.
 * - A failing event is retried with exponential backoff and jitter; after
 *   `maxAttempts` (or a `TerminalError`) it becomes a dead letter, with its
 *   error, and waits for an operator. Only its own key waits (`block-key`),
 *   or not even that (`skip`); entries waiting behind it do not count
 *   toward `maxPendingEntries`, so other keys keep flowing.
 * - A cursor moved in the database (an operator's reset, by SQL or
 *   `baton consumers reset`) is followed before the next fetch, and a
 *   reset's NOTIFY cuts a long-poll short. A producer that pruned past the
 *   cursor (410) is recorded on the subscription row (stuck, with the
 *   oldest retained position) and asked again every 2 s; the consumer never
 *   skips the gap by itself.
 */
export class Consumer {
  private readonly o: CompiledConsumerOptions;
  private readonly store: InboxStore;
  private readonly gate: FetchGate;
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly workerSignals: WakeSignal[] = [];
  private readonly fetchSignal = new WakeSignal();
  private abort = new AbortController();
  private loops: Promise<void>[] = [];
  private started = false;
  private stopping = false;
  private cursor: string | undefined;
  /** Cuts the current long-poll short when a reset NOTIFY arrives. */
  private interruptFetch: AbortController | undefined;
  /** The cursor the producer last refused (410), while it is still ours. */
  private refused: { cursor: string | undefined } | undefined;
  private unlisten: (() => Promise<void>) | undefined;

  constructor(private readonly options: ConsumerOptions) {
    this.o = compileConsumerOptions(options);
    this.store = new InboxStore(this.o.schemaSql, this.o.name, this.o.onDeadLetter);
    this.gate = new FetchGate(this.o.schemaSql, this.o.name, this.o.onDeadLetter);
  }

  /** The subscription's name. */
  get name(): string {
    return this.o.name;
  }

  /** The name of the source it reads (the producing service). */
  get sourceName(): string {
    return this.options.source.name;
  }

  /** Registers a handler for event types. Call before `start()`. */
  subscribe<P = unknown>(
    types: string | readonly string[],
    handler: EventHandler<P>,
    options: { schema?: StandardSchemaV1<unknown, P> } = {},
  ): this {
    if (this.started) throw new InvalidInputError('subscribe() must be called before start().');
    for (const type of typeof types === 'string' ? [types] : types) {
      if (this.subscriptions.has(type)) {
        throw new InvalidInputError(
          `event type "${type}" already has a handler in subscription "${this.o.name}".`,
        );
      }
      this.subscriptions.set(type, { handler: handler as EventHandler, schema: options.schema });
    }
    return this;
  }

  async start(): Promise<void> {
    if (this.started) return;
    if (this.subscriptions.size === 0) {
      throw new InvalidInputError(
        `subscription "${this.o.name}" has no handlers: call subscribe() first.`,
      );
    }
    this.started = true;
    this.stopping = false;
    this.abort = new AbortController();
    try {
      this.cursor = await this.store.ensureSubscription(this.options.db, this.options.source.name, [
        ...this.subscriptions.keys(),
      ]);
      if (this.options.cursorChannel) {
        this.unlisten = await this.options.db.listen(
          this.options.cursorChannel,
          this.onCursorNotify,
        );
      }
    } catch (error) {
      this.started = false;
      throw error;
    }
    this.loops = [this.fetchLoop()];
    for (let i = 0; i < this.o.concurrency; i++) {
      const signal = new WakeSignal();
      this.workerSignals.push(signal);
      this.loops.push(this.workLoop(signal));
    }
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.stopping = true;
    this.abort.abort();
    this.fetchSignal.wake();
    for (const s of this.workerSignals) s.wake();
    await Promise.all(this.loops);
    this.loops = [];
    this.workerSignals.length = 0;
    await this.options.source.pause?.();
    await this.unlisten?.();
    this.unlisten = undefined;
    this.started = false;
  }

  /** A reset's NOTIFY (payload: a subscription; empty after a lost LISTEN connection). */
  private readonly onCursorNotify = (payload: string): void => {
    if (payload !== '' && payload !== this.o.name) return;
    this.interruptFetch?.abort();
    this.fetchSignal.wake();
  };

  private wakeWorkers(): void {
    for (const s of this.workerSignals) s.wake();
  }

  private async fetchLoop(): Promise<void> {
    let failures = 0;
    let lastPrune = 0;
    while (!this.stopping) {
      try {
        if (Date.now() - lastPrune > 60_000) {
          lastPrune = Date.now();
          await this.store.prune(this.options.db, this.o.retentionMs);
        }
        const gate = await this.gate.read(this.options.db, this.o.maxPendingEntries);
        this.followStoredCursor(gate.cursor);
        if (gate.full) {
          await this.fetchSignal.wait(200);
          continue;
        }
        await this.fetchOnce();
        this.refused = undefined;
        failures = 0;
      } catch (error) {
        if (this.stopping) break;
        failures++;
        await this.fetchSignal.wait(await this.afterFetchFailure(error, failures));
      }
    }
  }

  /**
   * Adopts a cursor moved in the database: an operator's reset, or another
   * process of this subscription that stored a batch first.
   */
  private followStoredCursor(stored: string | undefined): void {
    if (stored === this.cursor) return;
    this.o.logger[this.refused ? 'info' : 'debug'](
      { subscription: this.o.name, from: this.cursor ?? null, to: stored ?? null },
      'baton consumer reads on from its cursor as moved in the database',
    );
    this.cursor = stored;
  }

  /** Logs (a 410: records) a failed fetch; returns how long to wait before the next. */
  private async afterFetchFailure(error: unknown, failures: number): Promise<number> {
    if (error instanceof CursorExpiredError) {
      await this.onCursorExpired(error);
      return EXPIRED_POLL_MS;
    }
    this.o.logger.error(
      { err: error, subscription: this.o.name, failures },
      'baton fetch failed; retrying',
    );
    return backoffDelay({ baseMs: 100, maxMs: 10_000 }, failures, this.o.random);
  }

  /**
   * The producer pruned the events after our cursor: nothing this process
   * does brings them back. Record it where an operator looks (`baton
   * consumers list`, `baton status`), say it once per refused cursor, and
   * keep looking every EXPIRED_POLL_MS — the cursor is re-read before each
   * fetch, and a reset's NOTIFY wakes the loop sooner.
   */
  private async onCursorExpired(error: CursorExpiredError): Promise<void> {
    const first = this.refused === undefined || this.refused.cursor !== this.cursor;
    this.refused = { cursor: this.cursor };
    if (first) {
      this.o.logger.error(
        { err: error, subscription: this.o.name, oldestRetained: error.oldestRetained },
        `baton consumer cannot continue: its producer pruned the events after cursor ${error.cursor}; move the cursor (\`baton consumers reset ${this.o.name} --to-oldest\`) and reconcile`,
      );
    }
    try {
      await recordCursorExpired(
        this.options.db,
        this.o.schemaSql,
        this.o.name,
        this.cursor,
        error.oldestRetained,
      );
    } catch (recordError) {
      this.o.logger.warn(
        { err: recordError, subscription: this.o.name },
        'baton consumer could not record its refused cursor; retrying',
      );
    }
  }

  /** One fetch + ingest. Exposed for tests that drive the consumer step by step. */
  async fetchOnce(waitMs = this.o.fetchWaitMs): Promise<number> {
    const batch = await this.fetchBatch(waitMs);
    if (!batch) return 0;
    if (batch.cursor === (this.cursor ?? '0')) {
      if (batch.items.length === 0) return 0;
      // A feed that returns events without moving its cursor would be re-read forever.
      throw new TransportError(
        `source ${this.options.source.name} returned ${batch.items.length} events without advancing its cursor (${batch.cursor}); the producer's feed is misbehaving`,
      );
    }
    const rows = toInboxRows(batch.items, new Set(this.subscriptions.keys()));
    const { moved, pending } = await this.store.ingest(
      this.options.db,
      rows,
      this.cursor,
      batch.cursor,
      this.o.handleOnIngest ? this.handleOnIngest : undefined,
    );
    if (!moved) {
      // Another process of this service moved the cursor first: its batch is in; read from where it left off.
      this.cursor = await this.store.readCursor(this.options.db);
      return 0;
    }
    this.cursor = batch.cursor;
    if (pending > 0) this.wakeWorkers();
    return rows.length;
  }

  /** One request to the source; undefined when a reset's NOTIFY cut it short. */
  private async fetchBatch(waitMs: number): Promise<FetchedBatch | undefined> {
    const interrupt = new AbortController();
    this.interruptFetch = interrupt;
    try {
      return await this.options.source.fetch({
        cursor: this.cursor,
        limit: this.o.batchSize,
        waitMs,
        types: [...this.subscriptions.keys()],
        signal: AbortSignal.any([this.abort.signal, interrupt.signal]),
      });
    } catch (error) {
      if (interrupt.signal.aborted && !this.abort.signal.aborted) return undefined;
      throw error;
    } finally {
      if (this.interruptFetch === interrupt) this.interruptFetch = undefined;
    }
  }

  private async workLoop(signal: WakeSignal): Promise<void> {
    // After a failed batch, go one event at a time for a batch's worth of
    // events (to find and record the failing one), then back to batches.
    let carefulLeft = 0;
    while (!this.stopping) {
      let handled = 0;
      try {
        if (carefulLeft > 0) {
          handled = await this.handleOneCarefully();
          carefulLeft = handled === 0 ? 0 : carefulLeft - 1;
        } else {
          handled = await this.handleBatch();
        }
      } catch (error) {
        if (carefulLeft === 0) {
          carefulLeft = this.o.handleBatchSize;
          continue;
        }
        this.o.logger.error(
          { err: error, subscription: this.o.name },
          'baton handler transaction failed',
        );
        await signal.wait(backoffDelay({ baseMs: 100, maxMs: 5_000 }, 1, this.o.random));
      }
      if (this.stopping) break;
      if (handled === 0) await signal.wait(1000);
    }
  }

  /**
   * Fast path: claim up to a batch of key heads and run their handlers in one
   * transaction. If any handler throws, the whole transaction rolls back and
   * the loop switches to the careful path.
   */
  async handleBatch(): Promise<number> {
    return this.options.db.transaction(async (tx) => {
      const entries = await this.store.claim(tx, this.o.handleBatchSize);
      for (const entry of entries) await this.runHandler(tx, entry);
      await this.store.markHandled(
        tx,
        entries.map((e) => e.inboxId),
      );
      return entries.length;
    });
  }

  /**
   * Careful path: one event per transaction, its handler inside a savepoint
   * so a failure is rolled back and recorded while the entry stays locked.
   * Returns 0 when nothing is ready.
   */
  async handleOneCarefully(): Promise<number> {
    let failed: { entry: InboxEntry; error: unknown } | undefined;
    const n = await this.options.db.transaction(async (tx) => {
      const [entry] = await this.store.claim(tx, 1);
      if (!entry) return 0;
      await tx.query('SAVEPOINT baton_handler');
      try {
        await this.runHandler(tx, entry);
        await tx.query('RELEASE SAVEPOINT baton_handler');
        await this.store.markHandled(tx, [entry.inboxId]);
      } catch (error) {
        await tx.query('ROLLBACK TO SAVEPOINT baton_handler');
        await this.recordFailure(tx, entry, error);
        failed = { entry, error };
      }
      return 1;
    });
    if (failed) {
      this.o.logger.warn(
        {
          err: failed.error,
          subscription: this.o.name,
          eventId: failed.entry.event.id,
          key: failed.entry.event.key,
        },
        'baton handler failed',
      );
    }
    return n;
  }

  /** Handlers of a batch being stored, in feed order (see `InboxStore.ingest`). */
  private readonly handleOnIngest = async (
    tx: Executor,
    entries: readonly InboxEntry[],
  ): Promise<void> => {
    for (const entry of entries) await this.runHandler(tx, entry);
  };

  private async runHandler(tx: Executor, entry: InboxEntry): Promise<void> {
    const sub = this.subscriptions.get(entry.event.type);
    if (!sub) throw new TerminalError(`no handler for event type "${entry.event.type}"`);
    let event = entry.event;
    if (sub.schema) {
      try {
        event = {
          ...event,
          payload: await validatePayload({ [event.type]: sub.schema }, event.type, event.payload),
        };
      } catch (error) {
        throw new TerminalError((error as Error).message, { cause: error });
      }
    }
    const started = performance.now();
    let outcome: 'ok' | 'error' = 'error';
    try {
      // A child of the span that published it: one trace from the producer's transaction.
      await inSpan(
        `process ${event.type}`,
        {
          kind: SpanKind.CONSUMER,
          parent: contextFromHeaders(event.headers),
          attributes: {
            'messaging.system': 'baton',
            'messaging.operation.type': 'process',
            'messaging.destination.name': event.source,
            'messaging.consumer.group.name': this.o.name,
            'messaging.message.id': event.id,
            'baton.event.key': event.key,
            'baton.event.version': event.version,
            'baton.attempt': entry.attempts + 1,
          },
        },
        () => sub.handler(event, tx, { attempt: entry.attempts, subscription: this.o.name }),
      );
      outcome = 'ok';
    } finally {
      const seconds = (performance.now() - started) / 1000;
      this.o.telemetry.handled(this.o.name, event.type, outcome, seconds);
    }
  }

  private async recordFailure(tx: Executor, entry: InboxEntry, error: unknown): Promise<void> {
    const attempts = entry.attempts + 1;
    const terminal =
      error instanceof TerminalError ||
      (error instanceof BatonError && error.code === 'BATON_SCHEMA_VIOLATION');
    const dead = terminal || attempts >= this.o.maxAttempts;
    const delay = retryDelay(error, this.o.backoff, attempts, this.o.random);
    this.o.telemetry.failed(this.o.name, dead ? 'dead' : 'retry');
    await this.store.markFailed(
      tx,
      entry.inboxId,
      describeError(error, attempts, dead),
      dead,
      delay,
    );
  }
}

function describeError(error: unknown, attempts: number, dead: boolean): string {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return dead ? `${message} (dead after ${attempts} attempt${attempts === 1 ? '' : 's'})` : message;
}
