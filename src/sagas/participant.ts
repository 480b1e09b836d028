import type { StandardSchemaV1 } from '@standard-schema/spec';
import { BatonError, InvalidInputError, TerminalError } from '../core/errors.ts';
import { validatePayload } from '../core/event-schemas.ts';
import type { Database, Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';
import { errorResponse, type HttpResponseLike, jsonResponse } from '../http/http-types.ts';
import { forbiddenFor } from '../http/service-handler.ts';
import { type BarrierOp, passBarrier, pruneBarrier, recordBarrierResult } from './barrier.ts';
import {
  type ActionRef,
  actionOf,
  actionRef,
  PARTICIPANT_NAME,
  type ReservationRef,
  reservationRef,
  resourceOf,
} from './participant-contract.ts';

export interface BranchCall {
  /** The global transaction (the saga id). */
  txId: string;
  /** The branch within it (the saga step). */
  branch: string;
}

/** A participant's reservable resource (e.g. loyalty `points`). Each function runs in the barrier's transaction. */
export interface ReservationHandlers<P = unknown, R = unknown> {
  /** Reserve. Throw `TerminalError` to refuse (e.g. not enough points). */
  try: (tx: Executor, payload: P, call: BranchCall) => Promise<R>;
  /** Make the reservation final. Must succeed eventually (it is retried). */
  confirm: (tx: Executor, payload: P, call: BranchCall) => Promise<void>;
  /** Release the reservation. Must succeed eventually (it is retried). */
  cancel: (tx: Executor, payload: P, call: BranchCall) => Promise<void>;
  /** Standard Schema for the payload (checked before anything runs). */
  schema?: StandardSchemaV1<unknown, P>;
  /** The services that may use this resource (needs per-service keys); default any authenticated caller. */
  callers?: readonly string[];
}

export interface ActionHandler<B = unknown, R = unknown> {
  run: (tx: Executor, body: B, context: { idempotencyKey: string }) => Promise<R>;
  /**
   * Undoes what `run` did for the same idempotency key; Baton calls it only if
   * `run` ran for that key (with its stored result), and at most once. Declare
   * it to serve `POST {base}/actions/{name}/undo`, which a saga's compensation
   * calls (`participantClient(…).undo(name, body, callKey)`) — also when the saga
   * does not know whether the call ran.
   */
  undo?: (tx: Executor, body: B, context: { idempotencyKey: string; result: R }) => Promise<void>;
  schema?: StandardSchemaV1<unknown, B>;
  /** The services that may call this action and its undo (needs per-service keys); default any authenticated caller. */
  callers?: readonly string[];
}

const NAME = PARTICIPANT_NAME;
/** Saga (transaction) ids and branch names a participant accepts. */
export const ID = /^[A-Za-z0-9_.:/-]{1,200}$/;

/**
 * The participant side of sagas, served on the service's Baton endpoints:
 *
 *   POST {base}/reservations/{resource}/{try|confirm|cancel}  { txId, branch, payload }
 *   POST {base}/actions/{name}     Idempotency-Key: <key>       body
 *   POST {base}/actions/{name}/undo  Idempotency-Key: <the call's key>  body
 *
 * Reservations pass the barrier (barrier.ts) in the business transaction;
 * actions store their result under the idempotency key in the same
 * transaction, and a repeat gets the stored result. An undo runs the action's
 * `undo` once if the key ran; if it never ran, the undo is a recorded no-op
 * and the key is blocked — a late call with it is refused (like the barrier's
 * anti-hanging rule for reservations). Answers: 200 done (or a
 * recorded no-op), 409 refused by the barrier, 422 refused by the business
 * function (`TerminalError`), 400 bad input — none of which changed anything.
 */
export class Participant {
  private readonly reservations = new Map<string, ReservationHandlers>();
  private readonly actions = new Map<string, ActionHandler>();

  constructor(
    private readonly db: Database,
    private readonly schemaSql: string,
  ) {}

  /** Declares a reservable resource; answers its typed name (`reservationRef`) for clients. */
  reservation<P, R>(
    resource: ReservationRef<P, R>,
    handlers: ReservationHandlers<P, R>,
  ): ReservationRef<P, R>;
  reservation<P, R>(resource: string, handlers: ReservationHandlers<P, R>): ReservationRef<P, R>;
  reservation<P, R>(
    ref: string | ReservationRef<P, R>,
    handlers: ReservationHandlers<P, R>,
  ): ReservationRef<P, R> {
    const resource = resourceOf(ref as string | ReservationRef<unknown, unknown>);
    if (!NAME.test(resource))
      throw new InvalidInputError(
        `reservation resource ${JSON.stringify(resource)} must be a plain name.`,
      );
    if (this.reservations.has(resource))
      throw new InvalidInputError(`reservation "${resource}" is declared twice.`);
    for (const op of ['try', 'confirm', 'cancel'] as const) {
      if (typeof handlers?.[op] !== 'function')
        throw new InvalidInputError(`reservation "${resource}" needs a ${op} function.`);
    }
    checkCallers(`reservation "${resource}"`, handlers.callers);
    this.reservations.set(resource, handlers as ReservationHandlers);
    return reservationRef<P, R>(resource);
  }

  /** Declares an idempotent action; answers its typed name (`actionRef`) for clients. */
  action<B, R>(name: ActionRef<B, R>, handler: ActionHandler<B, R>): ActionRef<B, R>;
  action<B, R>(name: string, handler: ActionHandler<B, R>): ActionRef<B, R>;
  action<B, R>(ref: string | ActionRef<B, R>, handler: ActionHandler<B, R>): ActionRef<B, R> {
    const name = actionOf(ref as string | ActionRef<unknown, unknown>);
    if (!NAME.test(name))
      throw new InvalidInputError(`action name ${JSON.stringify(name)} must be a plain name.`);
    if (this.actions.has(name)) throw new InvalidInputError(`action "${name}" is declared twice.`);
    checkCallers(`action "${name}"`, handler?.callers);
    this.actions.set(name, handler as ActionHandler);
    return actionRef<B, R>(name);
  }

  /**
   * Deletes barrier rows and idempotency keys older than `retentionMs`. Keep
   * them longer than any saga can still send a call for the same branch (its
   * deadline plus its retries) — a row pruned too early lets a very late try
   * through after its cancel. Call it on a schedule (e.g. daily, 7 days).
   */
  async prune(retentionMs: number): Promise<{ barrier: number; idempotencyKeys: number }> {
    if (!(Number.isFinite(retentionMs) && retentionMs > 0))
      throw new InvalidInputError('retentionMs must be a positive number.');
    const barrier = await pruneBarrier(this.db, this.schemaSql, retentionMs);
    const keys = await queryPrepared(
      this.db,
      `DELETE FROM ${this.schemaSql}.idempotency_keys WHERE created_at < now() - make_interval(secs => $1::double precision / 1000)`,
      [retentionMs],
    );
    return { barrier, idempotencyKeys: keys.rowCount ?? 0 };
  }

  /** Runs one reservation operation (also what the HTTP route calls). */
  async reserve(
    resource: string,
    op: BarrierOp,
    call: BranchCall,
    rawPayload: unknown,
    /** The calling service (per-service keys), else undefined. */
    caller?: string,
  ): Promise<HttpResponseLike> {
    const handlers = this.reservations.get(resource);
    if (!handlers)
      return errorResponse(
        404,
        'BATON_UNKNOWN_RESOURCE',
        `no reservation resource "${resource}" here (known: ${[...this.reservations.keys()].join(', ') || 'none'})`,
      );
    const forbidden = forbiddenFor(handlers.callers, caller, `reservation "${resource}"`);
    if (forbidden) return forbidden;
    let payload: unknown;
    try {
      payload = await validatePayload(
        handlers.schema ? { [resource]: handlers.schema } : undefined,
        resource,
        rawPayload,
      );
    } catch (error) {
      return errorResponse(400, 'BATON_BAD_REQUEST', (error as Error).message);
    }
    return this.inTransaction(async (tx) => {
      const scope = { caller: caller ?? '', resource, txId: call.txId, branch: call.branch };
      const decision = await passBarrier(tx, this.schemaSql, { ...scope, op });
      if (!decision.run) {
        if (decision.reason === 'cancelled-before-try') {
          throw new Refusal(
            errorResponse(
              409,
              'BATON_CANCELLED_BEFORE_TRY',
              `try of ${call.txId}/${call.branch} refused: its cancel arrived first`,
            ),
          );
        }
        if (decision.reason === 'no-try') {
          // Rolls back the confirm's own barrier row: kept, it would answer a repeat
          // "duplicate" (200) and swallow the real confirm after a late try.
          throw new Refusal(
            errorResponse(
              409,
              'BATON_NO_TRY',
              `confirm of ${call.txId}/${call.branch} refused: nothing was reserved (no try ran)`,
            ),
          );
        }
        if (decision.reason === 'cancelled') {
          throw new Refusal(
            errorResponse(
              409,
              'BATON_CANCELLED',
              `confirm of ${call.txId}/${call.branch} refused: the reservation was cancelled`,
            ),
          );
        }
        return jsonResponse(200, { outcome: decision.reason, result: decision.result });
      }
      const result =
        op === 'try'
          ? await handlers.try(tx, payload, call)
          : await handlers[op](tx, payload, call);
      await recordBarrierResult(tx, this.schemaSql, { ...scope, op }, result ?? null);
      return jsonResponse(200, { outcome: 'done', result: result ?? null });
    });
  }

  /** Runs one idempotent action (also what the HTTP route calls). */
  async act(
    name: string,
    idempotencyKey: string,
    rawBody: unknown,
    /** The calling service (per-service keys), else undefined: its keys are its own. */
    caller?: string,
  ): Promise<HttpResponseLike> {
    const handler = this.actions.get(name);
    if (!handler)
      return errorResponse(
        404,
        'BATON_UNKNOWN_ACTION',
        `no action "${name}" here (known: ${[...this.actions.keys()].join(', ') || 'none'})`,
      );
    const forbidden = forbiddenFor(handler.callers, caller, `action "${name}"`);
    if (forbidden) return forbidden;
    const by = caller ?? '';
    const checked = await checkBody(name, handler, rawBody);
    if ('response' in checked) return checked.response;
    const body = checked.body;
    return this.inTransaction(async (tx) => {
      const claimed = await queryPrepared(
        tx,
        `INSERT INTO ${this.schemaSql}.idempotency_keys (caller, key, action, seal)
         VALUES ($3, $1, $2, ${this.schemaSql}.idempotency_seal($1, $2, 'done', NULL, $3))
         ON CONFLICT (caller, key) DO NOTHING`,
        [idempotencyKey, name, by],
      );
      if (claimed.rowCount !== 1) {
        const stored = await queryPrepared<{ action: string; result: unknown; state: string }>(
          tx,
          `SELECT action, result, state FROM ${this.schemaSql}.idempotency_keys WHERE caller = $2 AND key = $1`,
          [idempotencyKey, by],
        );
        const row = stored.rows[0];
        if (row && row.action !== name) {
          return errorResponse(
            409,
            'BATON_KEY_REUSED',
            `idempotency key ${idempotencyKey} was used for action "${row.action}"`,
          );
        }
        if (row?.state === 'blocked' || row?.state === 'undone') {
          return errorResponse(
            409,
            'BATON_UNDONE',
            row.state === 'blocked'
              ? `action "${name}" with key ${idempotencyKey} refused: its undo arrived first`
              : `action "${name}" with key ${idempotencyKey} was run and then undone`,
          );
        }
        return jsonResponse(200, { outcome: 'duplicate', result: row?.result ?? null });
      }
      const result = await handler.run(tx, body, { idempotencyKey });
      await queryPrepared(
        tx,
        `UPDATE ${this.schemaSql}.idempotency_keys SET result = $2,
           seal = ${this.schemaSql}.idempotency_seal(key, action, state, $2::jsonb, caller)
         WHERE caller = $3 AND key = $1`,
        [idempotencyKey, JSON.stringify(result ?? null), by],
      );
      return jsonResponse(200, { outcome: 'done', result: result ?? null });
    });
  }

  /** Undoes one action call (also what the HTTP route calls); see the class comment. */
  async undo(
    name: string,
    idempotencyKey: string,
    rawBody: unknown,
    /** The calling service (per-service keys), else undefined. */
    caller?: string,
  ): Promise<HttpResponseLike> {
    const handler = this.actions.get(name);
    if (!handler?.undo)
      return errorResponse(
        404,
        'BATON_UNKNOWN_ACTION',
        handler
          ? `action "${name}" has no undo: declare one to let sagas compensate it`
          : `no action "${name}" here (known: ${[...this.actions.keys()].join(', ') || 'none'})`,
      );
    const forbidden = forbiddenFor(handler.callers, caller, `action "${name}"`);
    if (forbidden) return forbidden;
    const by = caller ?? '';
    const undo = handler.undo;
    const checked = await checkBody(name, handler, rawBody);
    if ('response' in checked) return checked.response;
    const body = checked.body;
    const s = this.schemaSql;
    return this.inTransaction(async (tx) => {
      // Never ran: block the key, so the call cannot run after its undo.
      const blocked = await queryPrepared(
        tx,
        `INSERT INTO ${s}.idempotency_keys (caller, key, action, state, undone_at, seal)
         VALUES ($3, $1, $2, 'blocked', now(), ${s}.idempotency_seal($1, $2, 'blocked', NULL, $3))
         ON CONFLICT (caller, key) DO NOTHING`,
        [idempotencyKey, name, by],
      );
      if (blocked.rowCount === 1) return jsonResponse(200, { outcome: 'nothing-to-undo' });
      const stored = await queryPrepared<{ action: string; result: unknown; state: string }>(
        tx,
        `SELECT action, result, state FROM ${s}.idempotency_keys WHERE caller = $2 AND key = $1 FOR UPDATE`,
        [idempotencyKey, by],
      );
      const row = stored.rows[0];
      if (!row || row.action !== name) {
        return errorResponse(
          409,
          'BATON_KEY_REUSED',
          `idempotency key ${idempotencyKey} was used for action "${row?.action}"`,
        );
      }
      if (row.state !== 'done') return jsonResponse(200, { outcome: 'duplicate' });
      await undo(tx, body, { idempotencyKey, result: row.result });
      await queryPrepared(
        tx,
        `UPDATE ${s}.idempotency_keys SET state = 'undone', undone_at = now(),
           seal = ${s}.idempotency_seal(key, action, 'undone', result, caller)
         WHERE caller = $2 AND key = $1`,
        [idempotencyKey, by],
      );
      return jsonResponse(200, { outcome: 'done' });
    });
  }

  /** A refusal (barrier: 409; business `TerminalError`: 422) rolls back; nothing changed. */
  private async inTransaction(
    fn: (tx: Executor) => Promise<HttpResponseLike>,
  ): Promise<HttpResponseLike> {
    try {
      return await this.db.transaction(fn);
    } catch (error) {
      if (error instanceof Refusal) return error.response;
      if (
        error instanceof TerminalError ||
        (error instanceof BatonError && !error.retryable && error.code !== 'BATON_INTERNAL')
      ) {
        return errorResponse(422, 'BATON_REFUSED', error.message);
      }
      const sqlstate = (error as { code?: unknown })?.code;
      if (typeof sqlstate === 'string' && refusesTheInput(sqlstate)) {
        // The caller's input broke the handler's SQL: asking again cannot help.
        return errorResponse(
          422,
          'BATON_REFUSED',
          `the participant's database refused the request (SQLSTATE ${sqlstate}): ${(error as Error).message}`,
        );
      }
      throw error;
    }
  }
}

/**
 * SQLSTATEs that say the request's values are wrong, not the moment: data
 * exceptions (class 22: a bad number, text too long) and integrity
 * violations (class 23: a check, a foreign key, NOT NULL) — except a unique
 * violation, which a concurrent writer can cause and a retry can resolve.
 * Everything else (serialization failures, lost connections, …) stays retryable.
 */
function refusesTheInput(sqlstate: string): boolean {
  return sqlstate.startsWith('22') || (sqlstate.startsWith('23') && sqlstate !== '23505');
}

/** Thrown inside the transaction to answer with `response` after rolling back. */
class Refusal {
  constructor(readonly response: HttpResponseLike) {}
}

/** The action's body checked against its schema, or the 400 that says why not. */
async function checkBody(
  name: string,
  handler: ActionHandler,
  raw: unknown,
): Promise<{ body: unknown } | { response: HttpResponseLike }> {
  try {
    return {
      body: await validatePayload(
        handler.schema ? { [name]: handler.schema } : undefined,
        name,
        raw,
      ),
    };
  } catch (error) {
    return { response: errorResponse(400, 'BATON_BAD_REQUEST', (error as Error).message) };
  }
}

function checkCallers(what: string, callers: readonly string[] | undefined): void {
  if (callers === undefined) return;
  if (
    !Array.isArray(callers) ||
    callers.length === 0 ||
    callers.some((c) => typeof c !== 'string' || !/^[A-Za-z][A-Za-z0-9_.-]{0,99}$/.test(c))
  )
    throw new InvalidInputError(
      `${what}: callers must list the services that may use it, e.g. ["orders"] (leave it out to allow every authenticated caller).`,
    );
}
