import { trace } from '@opentelemetry/api';
import { type DestinationStream, destination, type Level, pino, stdTimeFunctions } from 'pino';
import type { Logger } from './logger.ts';

export interface JsonLoggerOptions {
  /** The service's name, on every line. */
  service: string;
  /** `trace`, `debug`, `info` (default), `warn`, `error`, `fatal` or `silent`; `BATON_LOG_LEVEL` when not given. */
  level?: Level | 'silent';
  /** Where lines go (default stdout, written synchronously so a crash loses none). */
  destination?: DestinationStream;
}

/**
 * Paths whose values never reach a log line: credentials and keys in any
 * object Baton or the application logs (a config, request headers, an
 * error's details).
 */
export const REDACTED_PATHS = [
  'password',
  'secret',
  'secrets',
  'token',
  'tokens',
  'privateKey',
  'adminToken',
  'databaseUrl',
  'connectionString',
  'authorization',
  '*.password',
  '*.secret',
  '*.secrets',
  '*.token',
  '*.tokens',
  '*.privateKey',
  '*.adminToken',
  '*.databaseUrl',
  '*.connectionString',
  '*.authorization',
  'headers["x-baton-signature"]',
  '*.headers["x-baton-signature"]',
  '*.headers.authorization',
];

/**
 * A structured JSON logger (pino) for Baton and the service around it: one
 * JSON object per line, with the service's name, the level a user sets, the
 * active trace's `trace_id` and `span_id` on every line logged inside a
 * span (OpenTelemetry), and credentials redacted. It fits `createBaton({
 * logger })` as it is.
 */
export function createJsonLogger(options: JsonLoggerOptions): Logger & { level: string } {
  const level = options.level ?? (process.env.BATON_LOG_LEVEL as Level | undefined) ?? 'info';
  return pino(
    {
      level,
      base: { service: options.service },
      timestamp: stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      mixin() {
        const span = trace.getActiveSpan()?.spanContext();
        return span && span.traceId !== '00000000000000000000000000000000'
          ? { trace_id: span.traceId, span_id: span.spanId }
          : {};
      },
    },
    options.destination ?? destination({ fd: 1, sync: true }),
  );
}
