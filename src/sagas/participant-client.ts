import { InvalidInputError, RetryableError, TerminalError, TransportError } from '../errors.ts';
import { authHeaders, type ClientAuth } from '../transports/http-feed/auth.ts';
import type { BarrierOp } from './barrier.ts';

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
  /** Runs action `name` once per `idempotencyKey`; a repeat gets the first result. */
  call<R = unknown>(name: string, body: unknown, idempotencyKey: string): Promise<R>;
  /**
   * Undoes `call(name, body, callKey)` if it ran (the action's `undo`, once); if
   * it never ran, records that, and the call is refused should it still arrive.
   * Pass the call's own idempotency key.
   */
  undo(name: string, body: unknown, callKey: string): Promise<void>;
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
 * errors, timeouts and 5xx throw `RetryableError` (the outcome is unknown:
 * the call may have run; repeating it is safe because of the barrier or the
 * idempotency key).
 */
export function participantClient(options: ParticipantClientOptions): ParticipantClient {
  let base: URL;
  try {
    base = new URL(options.url.replace(/\/?$/, '/'));
  } catch {
    throw new InvalidInputError(`participant url "${options.url}" is not a valid URL`);
  }
  const timeoutMs = options.timeoutMs ?? 10_000;

  async function post(
    path: string,
    body: unknown,
    extraHeaders: Record<string, string> = {},
  ): Promise<unknown> {
    const url = new URL(path, base);
    const text = JSON.stringify(body ?? null);
    const target = `${url.pathname}${url.search}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...extraHeaders,
          ...authHeaders(options.auth, { method: 'POST', target, body: text }),
        },
        body: text,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      throw new RetryableError(
        `participant ${options.name} did not answer ${path}: ${(error as Error).message}`,
        undefined,
        {
          cause: error,
        },
      );
    }
    const answer = await response.text();
    let parsed: { result?: unknown; error?: { code?: string; message?: string } } | undefined;
    try {
      parsed = JSON.parse(answer);
    } catch {
      parsed = undefined;
    }
    if (response.status === 200 && parsed) return parsed.result ?? null;
    const reason = parsed?.error?.message ?? answer.slice(0, 300);
    if (response.status >= 400 && response.status < 500 && response.status !== 429) {
      const error = new TerminalError(
        `participant ${options.name} refused ${path} (${response.status} ${parsed?.error?.code ?? ''}): ${reason}`,
      );
      (error as TerminalError & { status?: number; reasonCode?: string }).status = response.status;
      (error as TerminalError & { reasonCode?: string }).reasonCode = parsed?.error?.code;
      throw error;
    }
    throw new TransportError(
      `participant ${options.name} answered ${response.status} to ${path}: ${reason}`,
    );
  }

  return {
    name: options.name,
    reserve: (op, resource, call) =>
      post(`reservations/${encodeURIComponent(resource)}/${op}`, {
        txId: call.txId,
        branch: call.branch,
        payload: call.payload,
      }),
    call: async <R>(name: string, body: unknown, idempotencyKey: string) =>
      (await post(`actions/${encodeURIComponent(name)}`, body, {
        'idempotency-key': idempotencyKey,
      })) as R,
    undo: async (name: string, body: unknown, callKey: string) =>
      void (await post(`actions/${encodeURIComponent(name)}/undo`, body, {
        'idempotency-key': callKey,
      })),
  };
}
