import { InvalidInputError, TransportError } from '../errors.ts';
import { errorResponse, jsonResponse } from '../http/http-types.ts';
import type { Route } from '../http/service-handler.ts';
import { parseUntrustedJson } from '../messaging/json-safety.ts';
import { authHeaders, type ClientAuth } from '../transports/http-feed/auth.ts';
import type { SetSide, SetSideTraffic } from './set-side.ts';
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
  /** The owner's endpoint, e.g. `http://customers:8080/baton/sets/customer` (see `setSideRoute`). */
  url: string;
  auth: ClientAuth;
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
 * Failure semantics: network errors, timeouts, 5xx and 429 throw a retryable
 * `TransportError`; any other non-200 answer a non-retryable one with the
 * peer's reason; an answer outside the protocol throws
 * `SetSideProtocolError`.
 */
export function httpSetSide(options: HttpSetSideOptions): SetSide & { traffic: SetSideTraffic } {
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new InvalidInputError(`set side url "${options.url}" is not a valid URL`);
  }
  const maxResponseBytes = options.maxResponseBytes ?? 64 * 1024 * 1024;
  const requestTimeoutMs = options.requestTimeoutMs ?? 60_000;
  const traffic: SetSideTraffic = { calls: 0, requestBytes: 0, responseBytes: 0 };
  const target = `${url.pathname}${url.search}`;

  async function call(request: SetSideRequest): Promise<unknown> {
    const body = JSON.stringify(encodeRequest(request));
    traffic.calls += 1;
    traffic.requestBytes += Buffer.byteLength(body);
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...authHeaders(options.auth, { method: 'POST', target, body }),
        },
        body,
        signal: AbortSignal.timeout(requestTimeoutMs),
      });
    } catch (error) {
      throw new TransportError(
        `set side at ${url.origin} did not answer: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const text = await readLimited(response, maxResponseBytes);
    traffic.responseBytes += Buffer.byteLength(text);
    if (response.status !== 200) {
      const retryable = response.status >= 500 || response.status === 429;
      throw new TransportError(
        `set side at ${url.origin} answered ${response.status}: ${peerReason(text)}`,
        { retryable },
      );
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new TransportError(`set side at ${url.origin} answered with malformed JSON`, {
        retryable: false,
      });
    }
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
 * prefixes, …). Errors of the side itself (the database) are thrown.
 */
export async function handleSetSideRequest(
  side: SetSide,
  body: unknown,
): Promise<{ status: number; body: unknown }> {
  const decoded = decodeRequest(body);
  if (!decoded.ok) {
    return { status: 400, body: { error: { code: 'BATON_BAD_REQUEST', message: decoded.reason } } };
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

async function readLimited(response: Response, limit: number): Promise<string> {
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > limit) {
    await response.body?.cancel();
    throw new TransportError(`set side answer of ${declared} bytes is over the limit of ${limit}`, {
      retryable: false,
    });
  }
  const bytes = Buffer.from(await response.arrayBuffer());
  if (bytes.length > limit) {
    throw new TransportError(`set side answer is over the limit of ${limit} bytes`, {
      retryable: false,
    });
  }
  return bytes.toString('utf8');
}

function peerReason(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown } };
    if (typeof parsed.error?.message === 'string') return parsed.error.message.slice(0, 500);
  } catch {}
  return text.slice(0, 200);
}
