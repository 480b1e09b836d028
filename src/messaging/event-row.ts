import type { BatonEvent } from '../core/event.ts';

/**
 * An event as Baton's tables hold it (outbox and inbox share the columns),
 * and its one mapping to the envelope handlers and transports see. Select
 * `event_id::text AS id` from the outbox; the inbox's column is `id` already.
 */
export interface EventColumns {
  id: string;
  type: string;
  key: string;
  /** bigint: pg returns it as a string. */
  version: string;
  payload: unknown;
  headers: Record<string, string>;
  occurred_at: Date;
  source: string;
}

export function toBatonEvent(row: EventColumns): BatonEvent {
  return {
    id: row.id,
    type: row.type,
    key: row.key,
    version: Number(row.version),
    payload: row.payload,
    headers: row.headers,
    occurredAt: row.occurred_at.toISOString(),
    source: row.source,
  };
}
