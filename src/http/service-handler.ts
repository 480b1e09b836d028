import { RequestVerifier, type ServerAuth } from './auth.ts';
import { errorResponse, type HttpRequestLike, type HttpResponseLike } from './http-types.ts';
import type { NonceStore } from './nonce-store.ts';

/** One endpoint under the service's base path; `pattern` matches the rest of the path. */
export interface Route {
  method: 'GET' | 'POST';
  pattern: RegExp;
  /** Human description for 404 answers, e.g. `GET /events`. */
  describe: string;
  handle(
    match: RegExpExecArray,
    url: URL,
    request: HttpRequestLike,
    signal?: AbortSignal,
  ): Promise<HttpResponseLike>;
}

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
  onClose?: () => Promise<void>;
}): ServiceHandler {
  const verifier = new RequestVerifier(options.auth, options.now, options.nonces);
  const basePath = (options.basePath ?? '/baton').replace(/\/$/, '');
  /** The route a request goes to, or the 400/404/405 that says why none. */
  const routeOf = (
    head: RequestHead,
  ): { route: Route; rest: string; url: URL } | { response: HttpResponseLike } => {
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
  return {
    basePath,
    refuseEarly: (head) => {
      const routed = routeOf(head);
      if ('response' in routed) return routed.response;
      const reason = verifier.credentialsMissing(head.headers);
      return reason ? errorResponse(401, 'BATON_UNAUTHENTICATED', reason) : undefined;
    },
    async handle(request, signal) {
      const routed = routeOf(request);
      if ('response' in routed) return routed.response;
      const { route, rest, url } = routed;
      let reason: string | undefined;
      try {
        reason = await verifier.verify(request.headers, {
          method: request.method,
          target: request.url,
          body: request.body,
        });
      } catch {
        return unavailable(); // the nonce could not be recorded
      }
      if (reason) return errorResponse(401, 'BATON_UNAUTHENTICATED', reason);
      try {
        return await route.handle(
          route.pattern.exec(rest) as RegExpExecArray,
          url,
          request,
          signal,
        );
      } catch {
        return unavailable();
      }
    },
    close: async () => {
      await options.onClose?.();
    },
  };
}

function unavailable(): HttpResponseLike {
  return errorResponse(
    503,
    'BATON_UNAVAILABLE',
    'the service could not read its database; retry later',
  );
}
