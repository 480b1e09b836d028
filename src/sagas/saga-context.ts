import { retryDelay } from '../core/backoff.ts';
import { LeaseLostError, TerminalError } from '../core/errors.ts';
import type { EventInput } from '../core/event.ts';
import { inSpan } from '../core/tracing.ts';
import type { Executor } from '../db/executor.ts';
import { shareClient } from '../db/pg-client.ts';
import type { ReservationClient } from './participant-client.ts';
import { type ReservationRef, resourceOf } from './participant-contract.ts';
import {
  type CallStepOptions,
  type CommandStepOptions,
  type LocalStepOptions,
  type RetryPolicy,
  type SagaContext,
  STEP_NAME,
} from './saga-definition.ts';
import type { StepKind } from './saga-states.ts';
import type { SagaRow, SagaStore, StepRecord, StepRow } from './saga-store.ts';

/** Thrown inside a saga function to stop this run until `wakeAt` (not an error). */
export class Suspend {
  constructor(
    readonly wakeAt: Date,
    readonly reason: string,
  ) {}
}

/** A step failed for good: the saga compensates. */
export class StepFailed extends Error {
  constructor(
    readonly step: string,
    override readonly cause: unknown,
  ) {
    super(`step "${step}" failed for good: ${(cause as Error)?.message ?? String(cause)}`);
  }
}

/**
 * Baton's own bookkeeping of a run (reading or writing step records, the
 * outbox row of a command) failed — the database went away. That is no
 * decision of the saga and no failure of a step: the run stops where it is
 * and the saga is run again later, where its records say it was. Seen in the
 * chaos set: the lookup after a lost commit failed as well, and the run took
 * it for the saga function throwing — a placed order's saga compensated.
 */
export class RunInterrupted extends Error {
  constructor(override readonly cause: unknown) {
    super(
      `saga run interrupted: its own bookkeeping failed (${(cause as Error)?.message ?? String(cause)}); the saga runs again later`,
    );
    this.name = 'RunInterrupted';
  }
}

/** Replay (to collect compensations) reached a step that has not completed. */
export class StopReplay {}

/** What undoing (and, for reservations, confirming) one step does. */
export interface Undo {
  ordinal: number;
  step: string;
  kind: StepKind;
  state: StepRow['state'];
  compensationAttempts: number;
  undo?: (tx: Executor | undefined) => Promise<void>;
  /** Runs outside a transaction (remote) or inside one (local: `tx` given). */
  local: boolean;
  confirm?: () => Promise<void>;
}

const DEFAULT_RETRY: Required<RetryPolicy> = {
  attempts: 3,
  backoff: { baseMs: 200, maxMs: 10_000 },
  timeoutMs: 10_000,
};

/**
 * The `SagaContext` of one run. In `forward` mode a step that has not
 * completed runs (or waits); in `collect` mode nothing runs: completed steps
 * return their results and register their undo, and the first step that has
 * not completed ends the replay — that is how a new worker recovers the
 * compensation closures after a crash.
 */
export class RunContext implements SagaContext {
  readonly undos: Undo[] = [];
  /** Command steps this run waits for (a reply arriving meanwhile must wake it). */
  readonly awaitedCommands: string[] = [];
  private ordinal = 0;
  /**
   * The record of a remote step (call, reserve) that completed in this run
   * but is not written yet: it rides on the run's next write — the next local
   * step's transaction, or the statement that moves the saga on — saving a
   * commit per remote step. At most one waits: a remote step writes it before
   * it calls out. A crash before it is written loses nothing: the step has no
   * record, so it is called again with the same key (the participant answers
   * the first outcome), or cancelled by a compensation (the first step without
   * a record is always cancelled, and it is this one).
   */
  deferred: StepRecord | undefined;
  /**
   * Set when bookkeeping failed in this run: whatever the saga function did
   * with the error (it may catch it), the run's outcome is not to be trusted.
   */
  interruption: RunInterrupted | undefined;
  private readonly seen = new Set<string>();
  private readonly startedAt = Date.now();

  constructor(
    private readonly store: SagaStore,
    private readonly saga: SagaRow,
    private readonly steps: Map<string, StepRow>,
    private readonly mode: 'forward' | 'collect',
    private readonly publish: (tx: Executor, event: EventInput) => Promise<unknown>,
    private readonly random: () => number = Math.random,
  ) {}

  get sagaId(): string {
    return this.saga.id;
  }

  get key(): string | undefined {
    return this.saga.key ?? undefined;
  }

  /** The database clock now (read at claim time, advanced by local elapsed time). */
  private now(): Date {
    return new Date(this.saga.dbNow.getTime() + (Date.now() - this.startedAt));
  }

  step<T>(
    name: string,
    action: (tx: Executor) => Promise<T>,
    options: LocalStepOptions<T> = {},
  ): Promise<T> {
    const retry = { ...DEFAULT_RETRY, ...options.retry };
    return this.run<T>(name, 'local', retry, {
      execute: (ordinal, attempts) =>
        this.fencedWithDeferred(async (tx) => {
          // An action that overran its timeout keeps running: once its transaction
          // is given up, its statements must fail, not run on the released connection.
          const guarded = closable(tx, name);
          let result: T;
          try {
            result = await withTimeout(action(guarded.executor), retry.timeoutMs, name);
          } finally {
            guarded.close();
          }
          await this.store.putStep(tx, this.saga.id, {
            name,
            kind: 'local',
            ordinal,
            state: 'completed',
            result: result ?? null,
            attempts,
          });
          return result;
        }),
      undo:
        options.compensate &&
        ((result) => ({ local: true, run: (tx) => options.compensate!(tx as Executor, result) })),
    });
  }

  call<T>(
    name: string,
    action: (idempotencyKey: string) => Promise<T>,
    options: CallStepOptions<T> = {},
  ): Promise<T> {
    const retry = { ...DEFAULT_RETRY, ...options.retry };
    const key = this.idempotencyKey(name);
    return this.run<T>(name, 'call', retry, {
      execute: async (ordinal, attempts) => {
        await this.writeDeferred();
        const result = await withTimeout(action(key), retry.timeoutMs, name);
        this.deferred = { name, kind: 'call', ordinal, state: 'completed', result, attempts };
        return result;
      },
      undo:
        options.compensate &&
        ((result) => ({
          local: false,
          run: () => options.compensate!(result ?? undefined, `${key}:compensate`, key),
        })),
      // Tried but no result (crash, timeout, lost answer): it may have run, so it is compensated.
      undoEvenIfNotCompleted: options.compensate !== undefined,
    });
  }

  reserve<T>(
    name: string,
    client: ReservationClient,
    ref: string | ReservationRef<unknown, unknown>,
    payload: unknown,
    options: { retry?: RetryPolicy } = {},
  ): Promise<T> {
    const resource = resourceOf(ref);
    const retry = { ...DEFAULT_RETRY, ...options.retry };
    const call = { txId: this.saga.id, branch: name, payload };
    return this.run<T>(name, 'reserve', retry, {
      execute: async (ordinal, attempts) => {
        await this.writeDeferred();
        const result = (await withTimeout(
          client.reserve('try', resource, call),
          retry.timeoutMs,
          name,
        )) as T;
        this.deferred = { name, kind: 'reserve', ordinal, state: 'completed', result, attempts };
        return result;
      },
      // A cancel is sent even for a try whose outcome is unknown: the barrier turns it into a no-op if the try never ran.
      undo: () => ({
        local: false,
        run: async () => void (await client.reserve('cancel', resource, call)),
      }),
      undoEvenIfNotCompleted: true,
      confirm: async () => void (await client.reserve('confirm', resource, call)),
    });
  }

  async command<T>(
    name: string,
    command: { type: string; key: string; payload: unknown },
    options: CommandStepOptions = {},
  ): Promise<T> {
    const timeoutMs = options.timeoutMs ?? 60_000;
    const correlationId = this.idempotencyKey(name);
    const existing = this.steps.get(name);
    if (this.mode === 'forward' && existing?.state === 'pending' && existing.correlationId) {
      // Sent before; the reply has not come yet (deliverReply would have completed the step).
      if (existing.waitUntil && existing.waitUntil <= this.now()) {
        await this.record(name, 'command', existing.ordinal, {
          state: 'failed',
          attempts: 1,
          lastError: `no reply within ${timeoutMs} ms`,
          correlationId,
        });
        throw new StepFailed(
          name,
          new TerminalError(`no reply to command ${command.type} within ${timeoutMs} ms`),
        );
      }
      this.ordinal++;
      this.seen.add(name);
      this.awaitedCommands.push(name);
      throw new Suspend(
        existing.waitUntil ?? this.now(),
        `reply to ${command.type} (step ${name})`,
      );
    }
    return this.run<T>(
      name,
      'command',
      { ...DEFAULT_RETRY, attempts: 1 },
      {
        execute: async (ordinal) => {
          const waitUntil = new Date(this.now().getTime() + timeoutMs);
          // Baton's own transaction (no code of the saga in it): its failure interrupts the run.
          await this.bookkeeping(() =>
            this.fencedWithDeferred(async (tx) => {
              await this.publish(tx, {
                type: command.type,
                key: command.key,
                payload: command.payload,
                headers: { 'baton-correlation-id': correlationId },
              });
              await this.store.putStep(tx, this.saga.id, {
                name,
                kind: 'command',
                ordinal,
                state: 'pending',
                attempts: 1,
                correlationId,
                waitUntil,
              });
            }),
          );
          this.awaitedCommands.push(name);
          throw new Suspend(waitUntil, `reply to ${command.type} (step ${name})`);
        },
        undo:
          options.compensate &&
          ((reply) => ({
            local: true,
            run: async (tx) =>
              void (await this.publish(tx as Executor, options.compensate!(reply))),
          })),
      },
    );
  }

  async sleep(name: string, ms: number): Promise<void> {
    const existing = this.steps.get(name);
    if (this.mode === 'forward' && existing?.state === 'pending' && existing.waitUntil) {
      if (existing.waitUntil > this.now()) {
        this.ordinal++;
        this.seen.add(name);
        throw new Suspend(existing.waitUntil, `timer ${name}`);
      }
      await this.record(name, 'sleep', existing.ordinal, {
        state: 'completed',
        attempts: 1,
        waitUntil: existing.waitUntil,
      });
      this.steps.set(name, { ...existing, state: 'completed' });
    }
    await this.run<null>(
      name,
      'sleep',
      { ...DEFAULT_RETRY, attempts: 1 },
      {
        execute: async (ordinal) => {
          const waitUntil = new Date(this.now().getTime() + ms);
          await this.record(name, 'sleep', ordinal, { state: 'pending', attempts: 1, waitUntil });
          throw new Suspend(waitUntil, `timer ${name}`);
        },
      },
    );
  }

  /**
   * The common path of every step: replay a recorded result, stop a replay,
   * wait for a retry time, or run the step and record its outcome.
   */
  private async run<T>(
    name: string,
    kind: StepKind,
    retry: Required<RetryPolicy>,
    how: {
      execute: (ordinal: number, attempts: number) => Promise<T>;
      undo?: (result: T) => { local: boolean; run: (tx: Executor | undefined) => Promise<void> };
      undoEvenIfNotCompleted?: boolean;
      confirm?: () => Promise<void>;
    },
  ): Promise<T> {
    if (!STEP_NAME.test(name))
      throw new TerminalError(
        `step name ${JSON.stringify(name)} must be 1–100 letters, digits, '.', '_', ':' or '-'.`,
      );
    if (this.seen.has(name))
      throw new TerminalError(
        `step name "${name}" is used twice in saga ${this.saga.name}; step names must be unique.`,
      );
    this.seen.add(name);
    const ordinal = ++this.ordinal;
    const record = this.steps.get(name);
    // One entry per step; a later outcome of this run (the step completing after a
    // retry registered it as "maybe tried") replaces what an earlier one said.
    let entry: Undo | undefined;
    const register = (result: unknown, state: StepRow['state'] = record?.state ?? 'completed') => {
      const undo = how.undo?.(result as T);
      const next: Undo = {
        ordinal,
        step: name,
        kind,
        state,
        compensationAttempts: record?.compensationAttempts ?? 0,
        undo: undo?.run,
        local: undo?.local ?? false,
        confirm: how.confirm,
      };
      if (entry) Object.assign(entry, next);
      else {
        entry = next;
        this.undos.push(entry);
      }
    };
    if (record && ['completed', 'confirmed', 'compensated'].includes(record.state)) {
      register(record.result);
      return record.result as T;
    }
    // A reservation tried before, with an unknown or failed outcome, is still cancelled on compensation.
    if (record && how.undoEvenIfNotCompleted) register(null);
    if (record?.state === 'failed')
      throw new StepFailed(name, new TerminalError(record.lastError ?? 'failed'));
    if (this.mode === 'collect') {
      // The replay stops at the first step with no outcome recorded. A reservation
      // there may have been tried all the same (a crash between the try and its
      // record, then a deadline or an abort): cancel it too — the barrier makes
      // that a no-op if the try never ran, and refuses the try if it comes late.
      if (how.undoEvenIfNotCompleted) register(null, 'pending');
      throw new StopReplay();
    }
    if (record?.retryAt && record.retryAt > this.now())
      throw new Suspend(record.retryAt, `retry of step ${name}`);
    const attempts = (record?.attempts ?? 0) + 1;
    try {
      const result = await inSpan(
        `saga step ${name}`,
        {
          attributes: {
            'baton.saga.id': this.saga.id,
            'baton.saga.step': name,
            'baton.saga.step.kind': kind,
            'baton.saga.step.attempt': attempts,
          },
        },
        () => how.execute(ordinal, attempts),
      );
      // Completed now, whatever an earlier attempt's record said (a run that
      // returns is confirmed from these states, without reading them back).
      register(result, 'completed');
      return result;
    } catch (error) {
      if (
        error instanceof Suspend ||
        error instanceof LeaseLostError ||
        error instanceof RunInterrupted
      )
        throw error;
      // A commit whose answer was lost (the database restarting under it) may have
      // committed the step and its record: look before recording a failure over it —
      // a local step run again would apply its effect twice.
      const stored = (
        await this.bookkeeping(() => this.store.steps(this.store.db, this.saga.id))
      ).get(name);
      if (stored?.state === 'completed') {
        register(stored.result, 'completed');
        return stored.result as T;
      }
      if (how.undoEvenIfNotCompleted) register(null);
      const terminal = error instanceof TerminalError || attempts >= retry.attempts;
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      const retryAt = terminal
        ? null
        : new Date(this.now().getTime() + retryDelay(error, retry.backoff, attempts, this.random));
      await this.record(name, kind, ordinal, {
        state: terminal ? 'failed' : 'pending',
        attempts,
        lastError: message,
        retryAt,
      });
      if (terminal) throw new StepFailed(name, error);
      throw new Suspend(retryAt as Date, `retry ${attempts + 1} of step ${name} (${message})`);
    }
  }

  private async record(
    name: string,
    kind: StepKind,
    ordinal: number,
    fields: Partial<StepRow> & Pick<StepRow, 'state'>,
  ): Promise<void> {
    await this.writeDeferred();
    await this.bookkeeping(() =>
      this.store.putStepFenced(this.saga.id, this.saga.fence, {
        name,
        kind,
        ordinal,
        ...fields,
      }),
    );
  }

  /** Writes the deferred remote step record on its own, if there is one. */
  async writeDeferred(): Promise<void> {
    const step = this.deferred;
    if (!step) return;
    await this.bookkeeping(() =>
      this.store.putStepFenced(this.saga.id, this.saga.fence, withNullResult(step)),
    );
    this.deferred = undefined;
  }

  /** Runs Baton's own read or write of the run; its failure interrupts the run (a lost lease stays itself). */
  private async bookkeeping<R>(fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (error) {
      if (error instanceof LeaseLostError || error instanceof RunInterrupted) throw error;
      this.interruption ??= new RunInterrupted(error);
      throw this.interruption;
    }
  }

  /** A fenced transaction that also writes the deferred remote step record (first: it came first). */
  private async fencedWithDeferred<R>(fn: (tx: Executor) => Promise<R>): Promise<R> {
    const step = this.deferred;
    const result = await this.store.fenced(this.saga.id, this.saga.fence, async (tx) => {
      if (step) await this.store.putStep(tx, this.saga.id, withNullResult(step));
      return fn(tx);
    });
    if (this.deferred === step) this.deferred = undefined;
    return result;
  }

  private idempotencyKey(step: string): string {
    return `${this.saga.id}:${step}`;
  }
}

/** A step record as stored: an undefined result is stored as null. */
export function withNullResult(step: StepRecord): StepRecord {
  return { ...step, result: step.result ?? null };
}

/** `tx` until `close()`, then an executor that refuses every statement. */
function closable(tx: Executor, step: string): { executor: Executor; close: () => void } {
  let closed = false;
  const executor: Executor = {
    query: (text, values) =>
      closed
        ? Promise.reject(
            new Error(`step "${step}" is over (timed out or failed): its transaction is gone`),
          )
        : tx.query(text, values),
  };
  // An ORM bound to the step's transaction (pgClient(tx)) is stopped with it too.
  shareClient(executor, tx, () => !closed);
  return {
    executor,
    close: () => {
      closed = true;
    },
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, step: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`step "${step}" timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
