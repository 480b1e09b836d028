/**
 * The event envelope. `id` is a UUIDv7; `version` orders the events of one
 * `key` (1, 2, 3, … in commit order, assigned by Baton); `headers` carry W3C
 * `traceparent`/`tracestate` through; `source` names the publishing service.
 */
export interface BatonEvent<P = unknown> {
  id: string;
  type: string;
  key: string;
  version: number;
  payload: P;
  headers: Record<string, string>;
  /** ISO-8601 time the publisher gave (informative only: never used for ordering). */
  occurredAt: string;
  source: string;
}

/** What a publisher hands to `publish`. Baton fills in id, version, source and (if absent) occurredAt. */
export interface EventInput<P = unknown> {
  type: string;
  key: string;
  payload: P;
  headers?: Record<string, string>;
  occurredAt?: Date;
}
