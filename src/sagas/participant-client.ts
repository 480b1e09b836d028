import { TerminalError } from '../core/errors.ts';
import type { ClientAuth } from '../http/auth.ts';
import { PeerError, signedClient } from '../http/signed-client.ts';
import type { BarrierOp } from './barrier.ts';
import { type ActionRef, actionOf } from './participant-contract.ts';

/** The saga side of a participant's reservations. */
export interface ReservationClient {
  reserve(
    op: BarrierOp,
    resource: string,
    call: { txId: string; branch: string; payload: unknown },
  ): Promise<unknown>;
}

/** Calls a participant's Baton endpoints (reservations and idempotent actions), signed. */
export interface ParticipantClient extends ReservationClient {
  readonly name: string;
  /**
   * Runs an action once per `idempotencyKey`; a repeat gets the first result.
   * Name it by its `actionRef` for a typed body and result.
   */
  call<B, R>(action: ActionRef<B, R>, body: B, idempotencyKey: string): Promise<R>;
  call<R = unknown>(name: string, body: unknown, idempotencyKey: string): Promise<R>;
  /**
   * Undoes `call(action, body, callKey)` if it ran (the action's `undo`, once); if
   * it never ran, records that, and the call is refused should it still arrive.
   * Pass the call's own idempotency key.
   */
  undo<B>(action: ActionRef<B, unknown> | string, body: B, callKey: string): Promise<void>;
}

export interface ParticipantClientOptions {
  name: string;
  /** Base URL of the participant's Baton endpoints, e.g. `http://loyalty:8080/baton`. */
  url: string;
  auth: ClientAuth;
  timeoutMs?: number;
}

/**
 * Failure semantics: 4xx answers (refused by the barrier or the business
 * function, bad input) throw `TerminalError` — retrying cannot help; network
 * errors, timeouts and 5xx throw the signed client's retryable `PeerError`
 * (the outcome is unknown: the call may have run; repeating it is safe
 * because of the barrier or the idempotency key).
 */
export function participantClient(options: ParticipantClientOptions): ParticipantClient {
  const client = signedClient({
    name: `participant ${options.name}`,
    peer: options.name,
    url: options.url,
    auth: options.auth,
    timeoutMs: options.timeoutMs ?? 10_000,
  });

  async function post(
    path: string,
    body: unknown,
    headers: Record<string, string> = {},
  ): Promise<unknown> {
    try {
      const answer = await client.json<{ result?: unknown }>('POST', path, {
        body: body ?? null,
        headers,
      });
      return answer.result ?? null;
    } catch (error) {
      // Refused (4xx): retrying cannot help — the saga compensates. Anything else
      // keeps its kind: the outcome is unknown, and a repeat is safe (barrier, key).
      if (error instanceof PeerError && error.code === 'BATON_PEER_REFUSED') {
        throw Object.assign(new TerminalError(error.message, { cause: error }), {
          status: error.status,
          reasonCode: error.peerCode,
        });
      }
      throw error;
    }
  }

  return {
    name: options.name,
    reserve: (op, resource, call) =>
      post(`reservations/${encodeURIComponent(resource)}/${op}`, {
        txId: call.txId,
        branch: call.branch,
        payload: call.payload,
      }),
    // One implementation behind the typed and the plain overload.
    call: ((action: string | ActionRef<unknown, unknown>, body: unknown, key: string) =>
      post(`actions/${encodeURIComponent(actionOf(action))}`, body, {
        'idempotency-key': key,
      })) as ParticipantClient['call'],
    undo: async (action: string | ActionRef<unknown, unknown>, body: unknown, callKey: string) =>
      void (await post(`actions/${encodeURIComponent(actionOf(action))}/undo`, body, {
        'idempotency-key': callKey,
      })),
  };
}
