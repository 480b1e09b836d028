import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { HttpRequestLike, HttpResponseLike } from '../../src/index.ts';

/** A tiny JSON router for the shop's own HTTP APIs (Baton's endpoints are served beside it). */
export type ApiHandler = (request: {
  params: string[];
  body: unknown;
  headers: Readonly<Record<string, string | undefined>>;
}) => Promise<HttpResponseLike>;

export interface ApiRoute {
  method: string;
  pattern: RegExp;
  handle: ApiHandler;
}

export function json(status: number, value: unknown): HttpResponseLike {
  return { status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) };
}

export function problem(status: number, message: string): HttpResponseLike {
  return json(status, { error: message });
}

/**
 * Routes a request; bad JSON or a malformed path is a 400, an unknown path a
 * 404, a value the database refuses (SQLSTATE class 22) a 400, any other
 * thrown error a 500 that tells the caller nothing of the server's insides
 * (`onError` gets the error for the log). Never a crash.
 */
export async function routeApi(
  routes: readonly ApiRoute[],
  request: HttpRequestLike,
  onError: (error: unknown) => void = () => {},
): Promise<HttpResponseLike> {
  const path = new URL(request.url, 'http://shop.invalid').pathname;
  for (const route of routes) {
    const match = route.pattern.exec(path);
    if (!match || route.method !== request.method) continue;
    let body: unknown = null;
    if (request.body && request.body.length > 0) {
      try {
        body = JSON.parse(request.body.toString('utf8'));
      } catch {
        return problem(400, 'the body must be JSON');
      }
    }
    let params: string[];
    try {
      params = match.slice(1).map(decodeURIComponent);
    } catch {
      return problem(400, 'the path has a malformed percent-encoding');
    }
    return inServerSpan(request, route, async () => {
      try {
        return await route.handle({ params, body, headers: request.headers });
      } catch (error) {
        if (String((error as { code?: unknown })?.code).startsWith('22'))
          return problem(400, 'a value in the request is not valid for its field');
        onError(error);
        return problem(500, 'internal error (the service logged it)');
      }
    });
  }
  return problem(404, `no route for ${request.method} ${path}`);
}

/**
 * The shop's API requests as SERVER spans, children of the caller's
 * `traceparent` (what HTTP instrumentation would do in a real service):
 * whatever Baton does for the request — a saga started, events published —
 * joins the caller's trace. Without an SDK registered this costs nothing.
 */
function inServerSpan(
  request: HttpRequestLike,
  route: ApiRoute,
  handle: () => Promise<HttpResponseLike>,
): Promise<HttpResponseLike> {
  const parent = propagation.extract(context.active(), request.headers);
  return trace
    .getTracer('shop')
    .startActiveSpan(
      `${request.method} ${routeName(route.pattern)}`,
      { kind: SpanKind.SERVER, attributes: { 'http.request.method': request.method } },
      parent,
      async (span) => {
        try {
          const response = await handle();
          span.setAttribute('http.response.status_code', response.status);
          if (response.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
          return response;
        } finally {
          span.end();
        }
      },
    );
}

/** A route as its span names it: `/orders/{}/cancel` for `^\/orders\/([^/]+)\/cancel$`. */
function routeName(pattern: RegExp): string {
  return pattern.source
    .replace(/^\^|\$$/g, '')
    .replace(/\\\//g, '/')
    .replace(/\([^)]*\)/g, '{}');
}

/** UTF-16 surrogates that do not pair up: not valid Unicode (PostgreSQL would store U+FFFD, Baton refuses them). */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Reads a required string field; undefined when missing or malformed. */
export function text(body: unknown, field: string, max = 200): string | undefined {
  const value = (body as Record<string, unknown> | null)?.[field];
  return typeof value === 'string' &&
    value.length > 0 &&
    value.length <= max &&
    !value.includes('\u0000') &&
    !LONE_SURROGATE.test(value)
    ? value
    : undefined;
}

export function int(body: unknown, field: string, min: number, max: number): number | undefined {
  const value = (body as Record<string, unknown> | null)?.[field];
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
    ? value
    : undefined;
}
