import { retryDelay } from '../core/backoff.ts';
import { CompensationFailed, LeaseLostError } from '../core/errors.ts';
import type { EventInput } from '../core/event.ts';
import { type Logger, silentLogger } from '../core/logger.ts';
import { contextFromHeaders, inSpan } from '../core/tracing.ts';
import type { Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';
import {
  RunContext,
  RunInterrupted,
  StepFailed,
  Suspend,
  type Undo,
  withNullResult,
} from './saga-context.ts';
import { type SagaDefinition, START_STEP } from './saga-definition.ts';
import type { SagaRow, SagaStore, StepRecord } from './saga-store.ts';

export interface RunDependencies {
  store: SagaStore;
  publish: (tx: Executor, event: EventInput) => Promise<unknown>;
  logger?: Logger;
  random?: () => number;
}

/**
 * Runs one leased saga as far as it can go now, by phase:
 *
 * - running: (re-)run the saga function; completed steps replay their
 *   results. A step that must wait suspends the saga (timer, retry backoff,
 *   reply). A step that fails for good, a passed deadline, or an error in the
 *   function itself switches to compensating. A returned function switches
 *   to completing.
 * - completing: confirm every reservation (retried; past the bound: stuck).
 * - compensating: replay to collect the undo of every completed step, then
 *   undo them in reverse order, each exactly once (local undos commit with
 *   their "compensated" mark; remote ones are idempotent by key or barrier).
 *
 * Every write names the worker's fencing token; losing the lease ends the
 * run with `LeaseLostError` and nothing half-written.
 */
export function runSaga(
  definition: SagaDefinition,
  saga: SagaRow,
  deps: RunDependencies,
): Promise<void> {
  // Each run continues the trace the saga was started in.
  return inSpan(
    `saga ${definition.name}`,
    {
      parent: contextFromHeaders(saga.trace),
      attributes: {
        'baton.saga.id': saga.id,
        'baton.saga.name': definition.name,
        'baton.saga.state': saga.state,
        'baton.saga.run': saga.runs,
      },
    },
    () => runSagaNow(definition, saga, deps),
  );
}

async function runSagaNow(
  definition: SagaDefinition,
  saga: SagaRow,
  deps: RunDependencies,
): Promise<void> {
  const log = deps.logger ?? silentLogger;
  const began = Date.now();
  try {
    if (saga.state === 'running' && saga.deadline && saga.deadline <= saga.dbNow) {
      await toCompensating(deps, saga, `deadline passed (${saga.deadline.toISOString()})`);
      saga = { ...saga, state: 'compensating' };
    }
    // The steps a run that returned just went through: confirming needs no replay of them.
    let returnedSteps: Undo[] | undefined;
    if (saga.state === 'running') {
      const outcome = await forward(definition, saga, deps);
      if (outcome.kind === 'suspended') return;
      if (outcome.kind === 'failed') {
        await toCompensating(deps, saga, outcome.error);
        saga = { ...saga, state: 'compensating' };
      } else {
        const fields = { output: outcome.output ?? null };
        // With no reservation to confirm, the run is done: `completed` at once (one
        // write and one commit fewer than passing through `completing`).
        const toConfirm = outcome.undos.some((u) => u.confirm && u.state === 'completed');
        const next = toConfirm ? 'completing' : 'completed';
        // The run's last remote step (if its record is still deferred) is recorded with it.
        if (outcome.deferred) {
          await deps.store.setStateWithStepFenced(
            saga.id,
            saga.fence,
            next,
            fields,
            withNullResult(outcome.deferred),
          );
        } else {
          await deps.store.setStateFenced(saga.id, saga.fence, next, fields);
        }
        if (!toConfirm) return;
        saga = { ...saga, state: 'completing' };
        returnedSteps = outcome.undos;
      }
    }
    if (saga.state === 'completing')
      await finish(definition, saga, deps, 'completing', returnedSteps);
    else if (saga.state === 'compensating') await finish(definition, saga, deps, 'compensating');
  } catch (error) {
    if (error instanceof LeaseLostError) {
      log.warn(
        { sagaId: saga.id, fence: saga.fence },
        'baton saga: lease lost; another worker carries on',
      );
      return;
    }
    if (error instanceof RunInterrupted) {
      log.warn({ sagaId: saga.id, err: error.cause }, error.message);
      await retrySoon(deps, saga, Date.now() - began);
      return;
    }
    throw error;
  }
}

type ForwardOutcome =
  | { kind: 'returned'; output: unknown; undos: Undo[]; deferred: StepRecord | undefined }
  | { kind: 'suspended' }
  | { kind: 'failed'; error: string };

async function forward(
  definition: SagaDefinition,
  saga: SagaRow,
  deps: RunDependencies,
): Promise<ForwardOutcome> {
  // A saga on its first lease has never run, so it has no step records to read.
  const steps = saga.runs <= 1 ? new Map() : await deps.store.steps(deps.store.db, saga.id);
  const ctx = new RunContext(deps.store, saga, steps, 'forward', deps.publish, deps.random);
  try {
    const output = await definition.run(ctx, saga.input);
    // The function may have caught an interruption and returned all the same.
    if (ctx.interruption) throw ctx.interruption;
    return { kind: 'returned', output, undos: ctx.undos, deferred: ctx.deferred };
  } catch (error) {
    if (error instanceof LeaseLostError) throw error;
    if (ctx.interruption) throw ctx.interruption;
    // Whatever ends the run forward, a remote step that completed in it gets its record.
    await ctx.writeDeferred();
    if (error instanceof Suspend) {
      await deps.store.fenced(saga.id, saga.fence, (tx) =>
        deps.store.suspend(tx, saga.id, error.wakeAt, error.reason, ctx.awaitedCommands),
      );
      return { kind: 'suspended' };
    }
    if (error instanceof StepFailed) return { kind: 'failed', error: error.message };
    // The saga function itself threw outside any step: a bug or a terminal decision of its own.
    return {
      kind: 'failed',
      error: `the saga function threw: ${(error as Error)?.message ?? String(error)}`,
    };
  }
}

/** After an interruption, the saga is due again in a second — if the database answers; else its lease expires. */
async function retrySoon(deps: RunDependencies, saga: SagaRow, elapsedMs: number): Promise<void> {
  const wakeAt = new Date(saga.dbNow.getTime() + elapsedMs + 1_000);
  await deps.store
    .fenced(saga.id, saga.fence, (tx) =>
      deps.store.suspend(tx, saga.id, wakeAt, 'run interrupted: the database went away'),
    )
    .catch(() => {});
}

async function toCompensating(deps: RunDependencies, saga: SagaRow, error: string): Promise<void> {
  await deps.store.setStateFenced(saga.id, saga.fence, 'compensating', { error });
}

/** Confirms reservations (completing) or undoes completed steps in reverse (compensating). */
async function finish(
  definition: SagaDefinition,
  saga: SagaRow,
  deps: RunDependencies,
  phase: 'completing' | 'compensating',
  /** The steps of the run that just returned (else they are recovered by a replay). */
  known?: Undo[],
): Promise<void> {
  const undos = known
    ? [...known].sort((a, b) => a.ordinal - b.ordinal)
    : await collect(definition, saga, deps);
  const todo =
    phase === 'completing'
      ? undos.filter((u) => u.confirm && u.state === 'completed')
      : undos.filter((u) => u.undo && u.state !== 'compensated').reverse();
  if (phase === 'compensating' && definition.options.compensateStart) {
    const start = await startUndo(definition, saga, deps);
    if (start.state !== 'compensated') todo.push(start);
  }
  const maxAttempts = definition.options.maxCompensationAttempts ?? 10;
  // Confirms are marked all at once with `→ completed` (a crash before that
  // repeats them: a confirm is idempotent through the participant's barrier).
  const confirmed: string[] = [];
  for (const item of todo) {
    try {
      if (phase === 'completing') {
        await inSpan(`saga confirm ${item.step}`, { attributes: stepAttributes(item) }, async () =>
          item.confirm?.(),
        );
        confirmed.push(item.step);
      } else {
        await inSpan(`saga compensate ${item.step}`, { attributes: stepAttributes(item) }, () =>
          compensateOne(saga, deps, item),
        );
      }
    } catch (error) {
      if (error instanceof LeaseLostError) throw error;
      const attempts = item.compensationAttempts + 1;
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      await deps.store.fenced(saga.id, saga.fence, async (tx) => {
        for (const step of confirmed) await deps.store.markStep(tx, saga.id, step, 'confirmed');
        await queryPrepared(
          tx,
          `UPDATE ${deps.store.schemaSql}.saga_steps SET compensation_attempts = $3, last_error = $4 WHERE saga_id = $1 AND name = $2`,
          [saga.id, item.step, attempts, message],
        );
        if (attempts >= maxAttempts) {
          const failure = new CompensationFailed(saga.id, item.step, attempts, error);
          await deps.store.setState(tx, saga.id, 'stuck', {
            error: failure.message,
            stuckFrom: phase,
          });
        } else {
          const delay = retryDelay(
            error,
            definition.options.compensationBackoff ?? { baseMs: 200, maxMs: 30_000 },
            attempts,
            deps.random,
          );
          await deps.store.suspend(
            tx,
            saga.id,
            new Date(saga.dbNow.getTime() + delay),
            `${phase === 'completing' ? 'confirm' : 'compensation'} of ${item.step} (attempt ${attempts + 1})`,
          );
        }
      });
      return;
    }
  }
  if (phase === 'completing') await deps.store.completeFenced(saga.id, saga.fence, confirmed);
  else await deps.store.setStateFenced(saga.id, saga.fence, 'compensated');
}

/**
 * The starting transaction's undo (`compensateStart`), as a local step
 * `@start` that goes last: its row is written when first needed, so sagas
 * pay nothing for it unless they compensate.
 */
async function startUndo(
  definition: SagaDefinition,
  saga: SagaRow,
  deps: RunDependencies,
): Promise<Undo> {
  const row = await deps.store.startStep(saga.id);
  const compensateStart = definition.options.compensateStart as NonNullable<
    SagaDefinition['options']['compensateStart']
  >;
  return {
    ordinal: -1,
    step: START_STEP,
    kind: 'local',
    state: row.state,
    compensationAttempts: row.compensationAttempts,
    local: true,
    undo: (tx) => compensateStart(tx as Executor, saga.input),
  };
}

/** Replays the saga function without running anything, to recover each completed step's undo and confirm. */
async function collect(
  definition: SagaDefinition,
  saga: SagaRow,
  deps: RunDependencies,
): Promise<Undo[]> {
  const steps = await deps.store.steps(deps.store.db, saga.id);
  const ctx = new RunContext(deps.store, saga, steps, 'collect', deps.publish, deps.random);
  try {
    await definition.run(ctx, saga.input);
  } catch {
    // StopReplay / StepFailed end the replay where the saga stopped; an error of
    // the function itself ends it where it failed before. What was collected stands.
  }
  return ctx.undos.sort((a, b) => a.ordinal - b.ordinal);
}

function stepAttributes(item: Undo): Record<string, string | number> {
  return { 'baton.saga.step': item.step, 'baton.saga.step.kind': item.kind };
}

async function compensateOne(saga: SagaRow, deps: RunDependencies, item: Undo): Promise<void> {
  if (item.local) {
    // The undo and its mark commit together: a local compensation runs exactly once.
    await deps.store.fenced(saga.id, saga.fence, async (tx) => {
      await item.undo?.(tx);
      await deps.store.markStep(tx, saga.id, item.step, 'compensated');
    });
    return;
  }
  await item.undo?.(undefined);
  await deps.store.markStepFenced(saga.id, saga.fence, item.step, 'compensated');
}
