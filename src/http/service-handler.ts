import { noTelemetry, type Telemetry } from '../core/telemetry.ts';
import { contextFromHeaders, inSpan, SpanKind } from '../core/tracing.ts';
import { type Authentication, answerHeaders, RequestVerifier, type ServerAuth } from './auth.ts';
import { errorResponse, type HttpRequestLike, type HttpResponseLike } from './http-types.ts';
import type { NonceStore } from './nonce-store.ts';

/** One endpoint under the service's base path; `pattern` matches the rest of the path. */
export interface Route {
  method: 'GET' | 'POST';
  pattern: RegExp;
  /** Human description for 404 answers, e.g. `GET /events`. */
  describe: string;
  /**
   * The services that may use this endpoint (needs `keys` auth, which names
   * the caller); any authenticated caller when not given. A route may also
   * decide per request from the `caller` it is handed (actions, reservations).
   */
  callers?: readonly string[];
  handle(
    match: RegExpExecArray,
    url: URL,
    request: HttpRequestLike,
    signal?: AbortSignal,
    /** The authenticated calling service (`keys` auth), else undefined. */
    caller?: string,
  ): Promise<HttpResponseLike>;
}

/** Where a request goes: its route, or the answer that says why it has none. */
type Routed = { route: Route; rest: string; url: URL } | { response: HttpResponseLike };

/** A request before its body is read: what can be checked without reading a byte of it. */
export type RequestHead = Pick<HttpRequestLike, 'method' | 'url' | 'headers'>;

export interface ServiceHandler {
  /** Where Baton's endpoints live, e.g. `/baton` (no trailing slash). */
  readonly basePath: string;
  /**
   * The answer to a request that `handle` would refuse whatever its body —
   * an unknown route, a wrong method, missing or malformed credentials — or
   * undefined. Servers call it before reading the body: a stranger's bytes
   * are never read.
   */
  refuseEarly(head: RequestHead): HttpResponseLike | undefined;
  handle(request: HttpRequestLike, signal?: AbortSignal): Promise<HttpResponseLike>;
  close(): Promise<void>;
}

/**
 * Baton's HTTP endpoints of one service behind one authentication check:
 * route → method → signature (401 without any data) → handler. A handler
 * that throws answers 503 (its database is unreachable); it never crashes
 * the server.
 */
export function createServiceHandler(options: {
  auth: ServerAuth;
  basePath?: string;
  routes: readonly Route[];
  now?: () => number;
  /** Where accepted nonces are kept: the service's database (see `DatabaseNonces`); default memory. */
  nonces?: NonceStore;
  /** Where answers are counted by route and status (the service's metrics). */
  telemetry?: Telemetry;
  onClose?: () => Promise<void>;
}): ServiceHandler {
  const verifier = new RequestVerifier(options.auth, options.now, options.nonces);
  const basePath = (options.basePath ?? '/baton').replace(/\/$/, '');
  /** The route a request goes to, or the 400/404/405 that says why none. */
  const routeOf = (head: RequestHead): Routed => {
    let url: URL;
    try {
      url = new URL(head.url, 'http://baton.invalid');
    } catch {
      return {
        response: errorResponse(400, 'BATON_BAD_REQUEST', 'request target is not a valid URL'),
      };
    }
    const rest = url.pathname.startsWith(`${basePath}/`)
      ? url.pathname.slice(basePath.length)
      : undefined;
    const matching = rest === undefined ? [] : options.routes.filter((r) => r.pattern.test(rest));
    if (rest === undefined || matching.length === 0) {
      // Before authentication: no list of what this service serves.
      return {
        response: errorResponse(404, 'BATON_NOT_FOUND', `no such endpoint under ${basePath}/`),
      };
    }
    const route = matching.find((r) => r.method === head.method);
    if (!route) {
      const allow = [...new Set(matching.map((r) => r.method))].join(', ');
      return {
        response: {
          ...errorResponse(405, 'BATON_METHOD', `this endpoint only answers ${allow}`),
          headers: { allow },
        },
      };
    }
    return { route, rest, url };
  };
  /** With the service's own key, every answer carries its signature over the request's nonce. */
  const signed = (head: RequestHead, response: HttpResponseLike): HttpResponseLike => {
    const headers = answerHeaders(options.auth, head.headers, response);
    return Object.keys(headers).length === 0
      ? response
      : { ...response, headers: { ...response.headers, ...headers } };
  };
  const telemetry = options.telemetry ?? noTelemetry;
  /** Signs and counts an answer under its route (`none`: no such endpoint), refused ones included. */
  const answered = (
    head: RequestHead,
    routed: Routed,
    response: HttpResponseLike,
    started: number,
  ): HttpResponseLike => {
    const route = 'route' in routed ? routed.route.describe : 'none';
    const answer = signed(head, response);
    telemetry.answered(route, head.method, answer.status, (performance.now() - started) / 1000);
    return answer;
  };
  return {
    basePath,
    refuseEarly: (head) => {
      const started = performance.now();
      const routed = routeOf(head);
      if ('response' in routed) return answered(head, routed, routed.response, started);
      const reason = verifier.credentialsMissing(head.headers);
      return reason
        ? answered(head, routed, errorResponse(401, 'BATON_UNAUTHENTICATED', reason), started)
        : undefined;
    },
    handle: async (request, signal) => {
      const started = performance.now();
      const routed = routeOf(request);
      const route = 'route' in routed ? `${basePath}${routed.route.describe}` : undefined;
      // A child of the caller's span (its traceparent): one trace across services.
      return inSpan(
        `${request.method} ${route ?? basePath}`,
        {
          kind: SpanKind.SERVER,
          parent: contextFromHeaders(request.headers),
          attributes: {
            'http.request.method': request.method,
            ...(route ? { 'http.route': route } : {}),
          },
        },
        async (span) => {
          const response = answered(
            request,
            routed,
            await handle(request, routed, signal),
            started,
          );
          span.setAttribute('http.response.status_code', response.status);
          return response;
        },
      );
    },
    close: async () => {
      await options.onClose?.();
    },
  };

  async function handle(
    request: HttpRequestLike,
    routed: Routed,
    signal?: AbortSignal,
  ): Promise<HttpResponseLike> {
    if ('response' in routed) return routed.response;
    const { route, rest, url } = routed;
    let verdict: Authentication;
    try {
      verdict = await verifier.authenticate(request.headers, {
        method: request.method,
        target: request.url,
        body: request.body,
      });
    } catch {
      return unavailable(); // the nonce could not be recorded
    }
    if ('refused' in verdict)
      return errorResponse(
        401,
        verdict.replayed ? 'BATON_REPLAYED' : 'BATON_UNAUTHENTICATED',
        verdict.refused,
      );
    const forbidden = forbiddenFor(route.callers, verdict.caller, route.describe);
    if (forbidden) return forbidden;
    try {
      return await route.handle(
        route.pattern.exec(rest) as RegExpExecArray,
        url,
        request,
        signal,
        verdict.caller,
      );
    } catch {
      return unavailable();
    }
  }
}

function unavailable(): HttpResponseLike {
  return errorResponse(
    503,
    'BATON_UNAVAILABLE',
    'the service could not read its database; retry later',
  );
}

/**
 * The 403 for a caller not among `callers` (undefined when allowed). With
 * shared auth the caller is unknown: an endpoint that names its callers
 * refuses everyone until the services sign with their own keys.
 */
export function forbiddenFor(
  callers: readonly string[] | undefined,
  caller: string | undefined,
  what: string,
): HttpResponseLike | undefined {
  if (!callers || (caller !== undefined && callers.includes(caller))) return undefined;
  return errorResponse(
    403,
    'BATON_FORBIDDEN',
    caller === undefined
      ? `${what} names the services that may use it; sign requests with per-service keys (auth type "keys")`
      : `${caller} may not use ${what}`,
  );
}
