import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { BackoffPolicy } from '../core/backoff.ts';
import { InvalidInputError } from '../core/errors.ts';
import type { Executor } from '../db/executor.ts';
import type { ReservationClient } from './participant-client.ts';
import type { ReservationRef } from './participant-contract.ts';

/** How a step is retried. A step fails for good on `TerminalError`, or when its attempts are used up. */
export interface RetryPolicy {
  /** Attempts in all (default 3). */
  attempts?: number;
  backoff?: BackoffPolicy;
  /** Per attempt; a slower attempt fails (retryable). Default 10 s. */
  timeoutMs?: number;
}

export interface LocalStepOptions<T> {
  /** Undo, run in a transaction of this service if a later step fails for good. */
  compensate?: (tx: Executor, result: T) => Promise<void>;
  retry?: RetryPolicy;
}

export interface CallStepOptions<T> {
  /**
   * Undo on the participant. Runs when the saga compensates — also for a call
   * whose outcome is unknown (it was tried, but a crash, a timeout or a lost
   * answer left no result: `result` is then `undefined`, as it is for a call
   * that returned nothing), because it may have
   * run. Gets its own idempotency key (`<callKey>:compensate`) and the call's
   * key; with a Baton participant, `client.undo(action, body, callKey)` undoes
   * the call if it ran and blocks it if it did not.
   */
  compensate?: (result: T | undefined, idempotencyKey: string, callKey: string) => Promise<void>;
  retry?: RetryPolicy;
}

export interface CommandStepOptions {
  /** How long to wait for the reply before the step fails for good. Default 60 s. */
  timeoutMs?: number;
  /** A command that undoes this one (sent if a later step fails for good). */
  compensate?: (reply: unknown) => { type: string; key: string; payload: unknown };
}

/**
 * What a saga function can do. Every step has a name, unique within the saga;
 * a completed step is never run again — on a re-run (after a crash, a timer,
 * a retry wait) it returns its recorded result. The saga function must
 * therefore be deterministic given its input and the step results: no
 * reading clocks, random numbers or the database outside steps.
 */
export interface SagaContext {
  readonly sagaId: string;
  readonly key: string | undefined;
  /**
   * A local step: runs `action` in a transaction of this service's database,
   * which also records the step as completed (exactly once in effect).
   */
  step<T>(
    name: string,
    action: (tx: Executor) => Promise<T>,
    options?: LocalStepOptions<T>,
  ): Promise<T>;
  /**
   * A remote call: `action` gets an idempotency key derived from saga and step
   * (`<sagaId>:<step>`) to send along (`participantClient(...).call` does);
   * after a crash it may run again with the same key.
   */
  call<T>(
    name: string,
    action: (idempotencyKey: string) => Promise<T>,
    options?: CallStepOptions<T>,
  ): Promise<T>;
  /**
   * A reservation (try / confirm / cancel): `try` now; `confirm` when the saga
   * completes; `cancel` when it compensates (also if the try's outcome is
   * unknown — the barrier makes a cancel without a try a no-op).
   */
  reserve<P, R>(
    name: string,
    client: ReservationClient,
    resource: ReservationRef<P, R>,
    payload: P,
    options?: { retry?: RetryPolicy },
  ): Promise<R>;
  reserve<T>(
    name: string,
    client: ReservationClient,
    resource: string,
    payload: unknown,
    options?: { retry?: RetryPolicy },
  ): Promise<T>;
  /**
   * An asynchronous command through the outbox; resumes when the reply event
   * arrives (see `Sagas.replyHandler`), or fails for good after `timeoutMs`.
   */
  command<T>(
    name: string,
    command: { type: string; key: string; payload: unknown },
    options?: CommandStepOptions,
  ): Promise<T>;
  /** A durable timer: resumes after `ms`, also across crashes and restarts. */
  sleep(name: string, ms: number): Promise<void>;
}

export type SagaFunction<I, O> = (ctx: SagaContext, input: I) => Promise<O>;

export interface SagaOptions<I> {
  /** Standard Schema of the input: a saga whose input fails it never starts. */
  input?: StandardSchemaV1<unknown, I>;
  /** Whole-saga deadline from its start: past it, the saga compensates. */
  deadlineMs?: number;
  /** Compensation / confirm attempts before the saga is marked stuck (default 10). */
  maxCompensationAttempts?: number;
  /** Backoff between compensation / confirm attempts. */
  compensationBackoff?: BackoffPolicy;
  /**
   * Undoes what the transaction that started the saga did (`start(…, { tx })`
   * beside your own writes — e.g. marks the order it inserted rejected). Runs
   * last when the saga compensates, after every step is undone, in the
   * transaction that records it: exactly once. Shown as step `@start`.
   */
  compensateStart?: (tx: Executor, input: I) => Promise<void>;
}

export interface SagaDefinition<I = unknown, O = unknown> {
  name: string;
  run: SagaFunction<I, O>;
  options: SagaOptions<I>;
}

const NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,99}$/;

/** Defines a saga: a name, an async function of (ctx, input), and options. */
export function saga<I, O>(
  name: string,
  run: SagaFunction<I, O>,
  options: SagaOptions<I> = {},
): SagaDefinition<I, O> {
  if (!NAME.test(name))
    throw new InvalidInputError(
      `saga name ${JSON.stringify(name)} must be 1–100 letters, digits, '.', '_', ':' or '-'.`,
    );
  if (typeof run !== 'function')
    throw new InvalidInputError(`saga ${name}: the second argument must be the saga function.`);
  if (options.compensateStart !== undefined && typeof options.compensateStart !== 'function')
    throw new InvalidInputError(`saga ${name}: compensateStart must be a function (tx, input).`);
  return { name, run, options };
}

export const STEP_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$/;
/** The step that stands for the starting transaction's work (`compensateStart`); no step name can be it. */
export const START_STEP = '@start';
