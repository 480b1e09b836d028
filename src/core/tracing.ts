import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';

/**
 * Baton's traces, through the OpenTelemetry API only: with no SDK
 * registered every call is a no-op; with one (the user's choice), one
 * business operation is one trace across services — the W3C trace context
 * rides in each event's headers (`traceparent`, `tracestate`) and on each
 * signed request, by the propagator the SDK registered.
 *
 * Span names and attributes follow the semantic conventions: messaging
 * (`send {type}` / `process {type}`, `messaging.system` = baton), HTTP
 * (`{METHOD} {route}`), and Baton's own for sagas, references and the
 * caretaker.
 */
const tracer = () => trace.getTracer('baton');

export { SpanKind };

/** Runs `fn` in a new span (a child of `parent`, else of the active context); records a throw. */
export async function inSpan<T>(
  name: string,
  options: { kind?: SpanKind; attributes?: Attributes; parent?: Context },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = options.parent ?? context.active();
  return tracer().startActiveSpan(
    name,
    { kind: options.kind ?? SpanKind.INTERNAL, attributes: options.attributes },
    parent,
    async (span) => {
      try {
        return await fn(span);
      } catch (error) {
        // Control flow that is no failure (a saga suspending, a replay stopping) is not an Error.
        if (error instanceof Error) {
          span.recordException(error);
          span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
        }
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/** The active trace context as headers (`traceparent`, `tracestate`); empty without an SDK or a span. */
export function traceHeaders(from: Context = context.active()): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(from, carrier);
  return carrier;
}

/** The trace context carried in headers (an event's or a request's), or none. */
export function contextFromHeaders(
  headers: Readonly<Record<string, unknown>> | null | undefined,
): Context {
  if (!headers) return ROOT_CONTEXT;
  const carrier: Record<string, string> = {};
  for (const key of ['traceparent', 'tracestate']) {
    const value = headers[key];
    if (typeof value === 'string') carrier[key] = value;
  }
  return propagation.extract(ROOT_CONTEXT, carrier);
}
