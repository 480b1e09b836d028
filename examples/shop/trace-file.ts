import { appendFileSync } from 'node:fs';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';

/** One finished span as the trace test reads it back. */
export interface RecordedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  name: string;
  /** SpanKind: 0 internal, 1 server, 2 client, 3 producer, 4 consumer. */
  kind: number;
  attributes: Record<string, unknown>;
}

/**
 * What a user does to see Baton's spans: register an OpenTelemetry SDK (a
 * context manager, the W3C propagator, a tracer provider). Here the exporter
 * appends each finished span to a file as a JSON line, so a test can put the
 * three service processes' spans together; a real deployment exports OTLP
 * to a collector instead.
 */
export function traceToFile(file: string, service: string): void {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  const exporter: SpanExporter = {
    export(spans, done) {
      appendFileSync(file, spans.map((s) => `${JSON.stringify(record(s, service))}\n`).join(''));
      done({ code: ExportResultCode.SUCCESS });
    },
    shutdown: async () => {},
  };
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
}

function record(span: ReadableSpan, service: string): RecordedSpan {
  return {
    service,
    traceId: span.spanContext().traceId,
    spanId: span.spanContext().spanId,
    parentSpanId: span.parentSpanContext?.spanId ?? null,
    name: span.name,
    kind: span.kind,
    attributes: { ...span.attributes },
  };
}
