import { InvalidInputError, SagaTimeoutError, SchemaViolationError } from '../core/errors.ts';
import type { BatonEvent, EventInput } from '../core/event.ts';
import { validatePayload } from '../core/event-schemas.ts';
import { findUnsafeJson } from '../core/json-safety.ts';
import type { Logger } from '../core/logger.ts';
import { traceHeaders } from '../core/tracing.ts';
import { uuidv7 } from '../core/uuid-v7.ts';
import { WakeSignal } from '../core/wake-signal.ts';
import type { Database, Executor } from '../db/executor.ts';
import type { EventHandler } from '../messaging/consumer.ts';
import { readSagaDetail, type SagaDetail } from './saga-admin.ts';
import type { SagaDefinition } from './saga-definition.ts';
import type { SagaState } from './saga-states.ts';
import { type SagaRow, SagaStore } from './saga-store.ts';
import { type HandOff, SagaWorker, type SagaWorkerOptions } from './saga-worker.ts';
import { SettledSignal } from './settled-signal.ts';

export interface StartOptions {
  /** Saga id; `start` is idempotent by it. Default a new UUIDv7. */
  id?: string;
  /** Sagas with the same key run one at a time, in the order they were started. */
  key?: string;
  /** Start inside your own transaction (the saga exists iff it commits). */
  tx?: Executor;
  /** Overrides the definition's deadline. */
  deadlineMs?: number;
}

declare const OUTPUT: unique symbol;

/**
 * What `sagas.start` answers: the saga's id and whether this call created
 * it. Started from a definition, it carries the saga's output type (for the
 * type checker only), so `waitFor(started)` answers a typed `output`.
 */
export interface StartedSaga<O = unknown> {
  id: string;
  created: boolean;
  readonly [OUTPUT]?: O;
}

export interface WaitOptions {
  /** Give up after this long (default 30 s) with a `SagaTimeoutError`; the saga goes on. */
  timeoutMs?: number;
}

/** States `waitFor` returns on: terminal, or stuck (an operator decides next). */
const SETTLED_STATES: readonly SagaState[] = ['completed', 'compensated', 'stuck'];
/** How often a waiter re-reads its saga although it is told (a lost notification), or when it cannot be. */
const REREAD_TOLD_MS = 1_000;
const REREAD_UNTOLD_MS = 50;

/** A saga as its caller sees it (`status`, `waitFor`): what `baton sagas show` shows, its output typed. */
export type SagaStatus<O = unknown> = Omit<SagaDetail, 'output'> & {
  /** What the saga's function returned, once completed (null before). */
  output: O | null;
};

/** The payload of a reply to a saga's asynchronous command. */
export interface CommandReply {
  correlationId: string;
  ok: boolean;
  result?: unknown;
  error?: string;
}

const ID = /^[A-Za-z0-9_.:/-]{1,200}$/;

/**
 * Sagas of one orchestrating service: define them, start them, run them
 * with workers, and operate them. Guarantees: a saga's state and every
 * completed step's result are recorded in this service's database; a
 * completed step never runs again; every saga ends completed or compensated
 * (or stuck, reported, waiting for an operator — never a silent loop).
 */
export class Sagas {
  readonly store: SagaStore;
  private readonly definitions = new Map<string, SagaDefinition>();
  private readonly workers = new Set<SagaWorker>();
  private readonly settled: SettledSignal;

  constructor(
    db: Database,
    schemaSql: string,
    private readonly publish: (tx: Executor, event: EventInput) => Promise<unknown>,
    private readonly logger: Logger,
    /** The channel the `saga_settled` trigger notifies: `channelsFor(schema).sagas`, never spelled here. */
    settledChannel: string,
  ) {
    this.store = new SagaStore(db, schemaSql);
    this.settled = new SettledSignal(db, settledChannel);
  }

  /** Registers saga definitions (see `saga(name, fn, options)`). */
  // biome-ignore lint/suspicious/noExplicitAny: definitions of any input and output types are stored side by side
  define(...definitions: SagaDefinition<any, any>[]): this {
    for (const definition of definitions as SagaDefinition[]) {
      if (this.definitions.has(definition.name)) {
        throw new InvalidInputError(`saga "${definition.name}" is defined twice.`);
      }
      this.definitions.set(definition.name, definition);
    }
    return this;
  }

  /**
   * Starts a saga; idempotent by id (a second start with the same id and
   * input returns the first; with another input it throws). The input is
   * validated first: a saga whose input fails its schema never starts.
   * Name the saga by its definition for a typed input and a typed
   * `waitFor(started)`.
   */
  async start<I, O>(
    saga: SagaDefinition<I, O>,
    input: I,
    options?: StartOptions,
  ): Promise<StartedSaga<O>>;
  async start(name: string, input: unknown, options?: StartOptions): Promise<StartedSaga>;
  async start(
    saga: string | SagaDefinition<unknown, unknown>,
    input: unknown,
    options: StartOptions = {},
  ): Promise<StartedSaga> {
    const name = typeof saga === 'string' ? saga : saga.name;
    const definition = this.definitions.get(name);
    if (!definition) {
      throw new InvalidInputError(
        `no saga named "${name}" is defined (defined: ${[...this.definitions.keys()].join(', ') || 'none'}).`,
      );
    }
    const id = options.id ?? uuidv7();
    if (!ID.test(id))
      throw new InvalidInputError(
        `saga id ${JSON.stringify(id)} must be 1–200 characters [A-Za-z0-9_.:/-].`,
      );
    if (
      options.key !== undefined &&
      (typeof options.key !== 'string' || options.key.length === 0 || options.key.length > 500)
    ) {
      throw new InvalidInputError('saga key must be a non-empty string of at most 500 characters.');
    }
    let value: unknown;
    try {
      value = await validatePayload(
        definition.options.input ? { [name]: definition.options.input } : undefined,
        name,
        input,
      );
    } catch (error) {
      if (error instanceof SchemaViolationError)
        throw new InvalidInputError(`input of saga "${name}" is invalid: ${error.message}`, {
          cause: error,
        });
      throw error;
    }
    const unsafe = findUnsafeJson(value ?? null);
    if (unsafe) throw new InvalidInputError(`input of saga "${name}" is not safe JSON: ${unsafe}`);
    // Outside a caller's transaction, an unkeyed saga goes straight to an idle
    // loop of a local worker, leased to it by the INSERT itself. Keyed sagas are
    // claimed as usual: only the claim sees whether an earlier one of the key is open.
    const reserved = options.tx || options.key !== undefined ? undefined : this.reserveLoop();
    let leased: SagaRow | undefined;
    try {
      const { created, row, sameInput } = await this.store.insert(options.tx ?? this.store.db, {
        id,
        name,
        key: options.key,
        input: value,
        deadlineMs: options.deadlineMs ?? definition.options.deadlineMs,
        leaseTo: reserved?.worker.lease,
        trace: traceHeaders(),
      });
      if (!created && (row.name !== name || !sameInput)) {
        throw new InvalidInputError(
          `saga id ${id} was already started as "${row.name}" with another input; use a new id.`,
        );
      }
      if (created && reserved) leased = row;
      else if (created && !options.tx) for (const w of this.workers) if (w.wakeOne()) break;
      return { id, created };
    } finally {
      reserved?.handOff(leased);
    }
  }

  private reserveLoop(): { worker: SagaWorker; handOff: HandOff } | undefined {
    for (const worker of this.workers) {
      const handOff = worker.reserveLoop();
      if (handOff) return { worker, handOff };
    }
    return undefined;
  }

  /** A worker that runs this service's sagas (start it; stop it on shutdown). */
  worker(options: SagaWorkerOptions = {}): SagaWorker {
    const worker = new SagaWorker(this.store, this.definitions, this.publish, options, this.logger);
    this.workers.add(worker);
    return worker;
  }

  /** Subscribe this to the reply event type of your commands: it resumes the waiting saga. */
  readonly replyHandler: EventHandler = async (event: BatonEvent, tx: Executor) => {
    const reply = event.payload as Partial<CommandReply> | null;
    if (typeof reply?.correlationId !== 'string' || typeof reply.ok !== 'boolean') {
      throw new InvalidInputError(
        `reply ${event.id} is not a saga command reply ({ correlationId, ok, result?, error? })`,
      );
    }
    await this.store.deliverReply(tx, reply.correlationId, {
      ok: reply.ok,
      result: reply.result,
      error: typeof reply.error === 'string' ? reply.error : undefined,
    });
  };

  /** The saga and its steps. @throws NotFoundError for an unknown id. */
  status(id: string, executor: Executor = this.store.db): Promise<SagaStatus> {
    return readSagaDetail(executor, this.store.schemaSql, id);
  }

  /**
   * Waits until the saga settles — completed, compensated, or stuck (an
   * operator decides next) — and answers its status. Told by the database
   * when it settles (LISTEN), not polling; from any process's workers.
   * @throws SagaTimeoutError after `timeoutMs` (default 30 s); the saga goes on.
   * @throws NotFoundError when there is no saga with that id.
   */
  async waitFor<O = unknown>(
    saga: string | StartedSaga<O>,
    options: WaitOptions | number = {},
  ): Promise<SagaStatus<O>> {
    const id = typeof saga === 'string' ? saga : saga.id;
    const timeoutMs = typeof options === 'number' ? options : (options.timeoutMs ?? 30_000);
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || timeoutMs > 2 ** 31 - 1)
      throw new InvalidInputError(
        `waitFor: timeoutMs must be a number of milliseconds from 0 to ${2 ** 31 - 1} (got ${String(timeoutMs)}).`,
      );
    const deadline = Date.now() + timeoutMs;
    const wake = new WakeSignal();
    // Listening before the first read: a settle between the read and the wait still wakes it.
    const watch = await this.settled.watch(id, () => wake.wake());
    try {
      for (;;) {
        const status = (await this.status(id)) as SagaStatus<O>;
        if (SETTLED_STATES.includes(status.state)) return status;
        const left = deadline - Date.now();
        if (left <= 0) throw new SagaTimeoutError(id, status.state, status.waitingFor, timeoutMs);
        await wake.wait(Math.min(left, watch.told ? REREAD_TOLD_MS : REREAD_UNTOLD_MS));
      }
    } finally {
      watch.stop();
    }
  }
}

/** The reply event a participant publishes for a saga's command (in its handler's transaction). */
export function commandReply(
  command: BatonEvent,
  reply: { type: string; ok: boolean; result?: unknown; error?: string },
): EventInput {
  const correlationId = command.headers['baton-correlation-id'];
  if (!correlationId)
    throw new InvalidInputError(
      `event ${command.id} is not a saga command (no baton-correlation-id header)`,
    );
  return {
    type: reply.type,
    key: command.key,
    payload: {
      correlationId,
      ok: reply.ok,
      result: reply.result ?? null,
      ...(reply.error ? { error: reply.error } : {}),
    },
  };
}

export type { SagaRow };
