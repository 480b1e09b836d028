import { parseUntrustedJson } from '../core/json-safety.ts';
import { errorResponse, type HttpResponseLike } from '../http/http-types.ts';
import type { Route } from '../http/service-handler.ts';
import type { BarrierOp } from './barrier.ts';
import { ID, type Participant } from './participant.ts';

/**
 * A participant's HTTP face: reservations' try/confirm/cancel and actions
 * (with their undo), each request's body parsed as untrusted JSON and its
 * names and ids checked before the participant sees it.
 */
export function participantRoutes(participant: Participant): Route[] {
  return [
    {
      method: 'POST',
      pattern: /^\/reservations\/([A-Za-z][A-Za-z0-9_.:-]{0,99})\/(try|confirm|cancel)$/,
      describe: '/reservations/{resource}/{try|confirm|cancel}',
      handle: async (match, _url, request, _signal, caller) => {
        const body = parseBody(request.body);
        if ('error' in body) return body.error;
        const b = body.value as { txId?: unknown; branch?: unknown; payload?: unknown } | null;
        if (
          typeof b !== 'object' ||
          b === null ||
          typeof b.txId !== 'string' ||
          !ID.test(b.txId) ||
          typeof b.branch !== 'string' ||
          !ID.test(b.branch)
        ) {
          return errorResponse(
            400,
            'BATON_BAD_REQUEST',
            'body must be { txId, branch, payload } with txId and branch of 1–200 characters [A-Za-z0-9_.:/-]',
          );
        }
        return participant.reserve(
          match[1] as string,
          match[2] as BarrierOp,
          { txId: b.txId, branch: b.branch },
          b.payload,
          caller,
        );
      },
    },
    {
      method: 'POST',
      pattern: /^\/actions\/([A-Za-z][A-Za-z0-9_.:-]{0,99})(\/undo)?$/,
      describe: '/actions/{name}[/undo]',
      handle: async (match, _url, request, _signal, caller) => {
        const key = request.headers['idempotency-key'];
        if (!key || !/^[A-Za-z0-9_.:/-]{1,300}$/.test(key)) {
          return errorResponse(
            400,
            'BATON_BAD_REQUEST',
            'an Idempotency-Key header of 1–300 characters [A-Za-z0-9_.:/-] is required',
          );
        }
        const body = parseBody(request.body);
        if ('error' in body) return body.error;
        return match[2]
          ? participant.undo(match[1] as string, key, body.value, caller)
          : participant.act(match[1] as string, key, body.value, caller);
      },
    },
  ];
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function parseBody(raw: Buffer | undefined): { value: unknown } | { error: HttpResponseLike } {
  try {
    const { value, problem } = parseUntrustedJson(strictUtf8.decode(raw ?? Buffer.alloc(0)));
    if (problem)
      return { error: errorResponse(400, 'BATON_BAD_REQUEST', `unsafe JSON body: ${problem}`) };
    return { value };
  } catch {
    return { error: errorResponse(400, 'BATON_BAD_REQUEST', 'the body must be JSON (UTF-8)') };
  }
}
