import { parseUntrustedJson } from '../core/json-safety.ts';
import { errorResponse, jsonResponse } from '../http/http-types.ts';
import type { Route } from '../http/service-handler.ts';
import { failure, type SignedClient } from '../http/signed-client.ts';
import { type SetSide, SetSideProtocolError, type SetSideTraffic } from './set-side.ts';
import {
  decodeDigestResponse,
  decodeMembersResponse,
  decodeRequest,
  encodeDigestResponse,
  encodeMembersResponse,
  encodeRequest,
  type SetSideRequest,
} from './set-side-wire.ts';

export interface HttpSetSideOptions {
  /** A signed client of the owner's Baton endpoints. */
  client: SignedClient;
  /** The set side's path under them, e.g. `sets/customer` (see `setSideRoute`). */
  path: string;
  /** Answers larger than this are refused (default 64 MiB). */
  maxResponseBytes?: number;
  /** Per call (default 60 s: a digest scans the whole table). */
  requestTimeoutMs?: number;
}

/**
 * A `SetSide` served by another service: one signed POST per call (see
 * set-side-wire.ts for the bodies). Counts the bytes of every request and
 * answer body in `traffic`.
 *
 * Failure semantics: the signed client's (`PeerError`: network errors,
 * timeouts, 5xx and 429 retryable; any other non-200 answer not, with the
 * peer's reason; 409 `BATON_HASH_SCHEME` from a side of another release);
 * an answer outside the protocol, or a side too old to name its hash
 * scheme, throws `SetSideProtocolError`.
 */
export function httpSetSide(options: HttpSetSideOptions): SetSide & { traffic: SetSideTraffic } {
  const maxResponseBytes = options.maxResponseBytes ?? 64 * 1024 * 1024;
  const timeoutMs = options.requestTimeoutMs ?? 60_000;
  const traffic: SetSideTraffic = { calls: 0, requestBytes: 0, responseBytes: 0 };

  async function call(request: SetSideRequest): Promise<unknown> {
    const body = Buffer.from(JSON.stringify(encodeRequest(request)));
    traffic.calls += 1;
    traffic.requestBytes += body.length;
    const answer = await options.client.request('POST', options.path, {
      body,
      headers: { 'content-type': 'application/json' },
      maxResponseBytes,
      timeoutMs,
    });
    traffic.responseBytes += answer.body.length;
    const text = answer.body.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (answer.status !== 200) {
      const error = failure(options.client.name, options.path, answer.status, parsed, text);
      if (answer.status === 400 && error.message.includes('unknown field "scheme"'))
        throw new SetSideProtocolError(
          `${options.client.name} runs a Baton release without hash schemes (it refused the field "scheme" at ${options.path}): run the same Baton release on the owner and the referrer`,
        );
      throw error;
    }
    if (parsed === undefined) {
      throw new SetSideProtocolError(`set side ${options.path} answered with malformed JSON`);
    }
    return parsed;
  }

  return {
    traffic,
    async digest(request) {
      return decodeDigestResponse(await call({ op: 'digest', ...request }), request);
    },
    async members(request) {
      return decodeMembersResponse(await call({ op: 'members', ...request }), request);
    },
  };
}

/**
 * Serves a `SetSide` for a decoded JSON body, independent of any HTTP
 * framework: 200 with the answer, or 400 with the reason the body was
 * refused (wrong types, unknown fields, bits out of 1..64, too many
 * prefixes, …), 409 for a request of another hash scheme. Errors of the
 * side itself (the database) are thrown.
 */
export async function handleSetSideRequest(
  side: SetSide,
  body: unknown,
): Promise<{ status: number; body: unknown }> {
  const decoded = decodeRequest(body);
  if (!decoded.ok) {
    const code = decoded.code ?? 'BATON_BAD_REQUEST';
    const status = code === 'BATON_HASH_SCHEME' ? 409 : 400;
    return { status, body: { error: { code, message: decoded.reason } } };
  }
  const request = decoded.value;
  return request.op === 'digest'
    ? { status: 200, body: encodeDigestResponse(await side.digest(request), request) }
    : { status: 200, body: encodeMembersResponse(await side.members(request)) };
}

/**
 * The HTTP route of the set sides a service serves: `POST {basePath}/sets/<name>`
 * with a JSON body, for `createServiceHandler` (which checks the signature
 * first: 401 without any data). 404 for a name `resolve` does not know, 400
 * for a body that is not JSON or not a valid request.
 */
export function setSideRoute(
  resolve: (name: string) => SetSide | undefined | Promise<SetSide | undefined>,
): Route {
  return {
    method: 'POST',
    pattern: /^\/sets\/([A-Za-z0-9_.:-]{1,100})$/,
    describe: '/sets/<entity>',
    async handle(match, _url, request) {
      const name = match[1] as string;
      const side = await resolve(name);
      if (!side) return errorResponse(404, 'BATON_NOT_FOUND', `no set side named "${name}"`);
      let parsed: unknown;
      try {
        const { value, problem } = parseUntrustedJson(
          strictUtf8.decode(request.body ?? Buffer.alloc(0)),
        );
        if (problem) return errorResponse(400, 'BATON_BAD_REQUEST', `unsafe JSON body: ${problem}`);
        parsed = value;
      } catch {
        return errorResponse(400, 'BATON_BAD_REQUEST', 'the body must be JSON (UTF-8)');
      }
      const answer = await handleSetSideRequest(side, parsed);
      return jsonResponse(answer.status, answer.body);
    },
  };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
