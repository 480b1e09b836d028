/**
 * The tables whose rows carry a seal (sql/migrations/000009_seals.sql): a
 * hash of the columns that decide what Baton does with the row, written by
 * Baton's own statements. For each: how to recompute the seal from a row
 * (alias `r`), how to name the row in a report, what a change means, and —
 * where the seal can identify the original among the few values a column
 * can take — which columns the caretaker may restore.
 */
export interface SealedTable {
  /** Table name in Baton's schema (or, for entity versions tables, the full quoted name). */
  table: string;
  /** SQL naming the row in a report (alias `r`). */
  keySql: string;
  /** SQL recomputing the seal of row `r`, with the given columns replaced by other SQL. */
  sealSql(schemaSql: string, replace?: Readonly<Record<string, string>>): string;
  /** Columns whose original value a broken seal identifies among these candidates. */
  recoverable: readonly { column: string; values: readonly string[] }[];
  /** What a row changed outside Baton means, for operators. */
  meaning: string;
}

/** `r.<column>`, or its replacement. */
function col(column: string, replace: Readonly<Record<string, string>> = {}): string {
  return replace[column] ?? `r.${column}`;
}

export const SEALED_TABLES: readonly SealedTable[] = [
  {
    table: 'outbox',
    keySql: `'position ' || coalesce(r.seq::text, 'none') || ', ' || r.key || ' v' || r.version`,
    sealSql: (s, x) =>
      `${s}.outbox_seal(${col('event_id', x)}, ${col('type', x)}, ${col('key', x)}, ${col('version', x)}, ${col('payload', x)}, ${col('headers', x)}, ${col('source', x)})`,
    recoverable: [],
    meaning:
      'an event changed (or written) outside Baton: consumers get what the publisher did not write',
  },
  {
    table: 'inbox',
    keySql: `r.subscription || ' #' || r.id || coalesce(' (' || r.key || ' v' || r.version || ')', '')`,
    sealSql: (s, x) =>
      `${s}.inbox_seal(${col('subscription', x)}, ${col('event_id', x)}, ${col('type', x)}, ${col('key', x)}, ${col('version', x)}, ${col('payload', x)}, ${col('headers', x)}, ${col('status', x)})`,
    recoverable: [{ column: 'status', values: ['pending', 'handled', 'dead', 'discarded'] }],
    meaning:
      'a received event changed outside Baton: a handled one marked pending runs again, a pending one marked handled never runs, a changed payload runs with what the producer did not send',
  },
  {
    table: 'subscriptions',
    keySql: `r.name || ' at ' || coalesce(r.cursor, 'the start')`,
    sealSql: (s, x) => `${s}.cursor_seal(${col('name', x)}, ${col('cursor', x)})`,
    recoverable: [],
    meaning:
      'a cursor moved outside Baton (use `baton consumers reset`): moved forward, events are skipped; moved back, re-read (deduplicated only within the inbox retention)',
  },
  {
    table: 'stream_versions',
    keySql: 'r.stream_key',
    sealSql: (s, x) => `${s}.counter_seal(${col('stream_key', x)}, ${col('version', x)})`,
    recoverable: [],
    meaning:
      'a version counter changed outside Baton: a counter set back would number new events with versions consumers already saw',
  },
  {
    table: 'version_gates',
    keySql: `r.scope || ' / ' || r.key`,
    sealSql: (s, x) => `${s}.gate_seal(${col('scope', x)}, ${col('key', x)}, ${col('version', x)})`,
    recoverable: [],
    meaning:
      'a version gate changed outside Baton: raised, it ignores the events up to it; lowered, it lets an older one apply again',
  },
  {
    table: 'barrier',
    keySql: `coalesce(nullif(r.caller, '') || ': ', '') || r.resource || ' / ' || r.tx_id || ' / ' || r.branch || ' / ' || r.op`,
    sealSql: (s, x) =>
      `${s}.barrier_seal(${col('tx_id', x)}, ${col('branch', x)}, ${col('op', x)}, ${col('resource', x)}, ${col('outcome', x)}, ${col('result', x)}, ${col('caller', x)})`,
    recoverable: [
      { column: 'op', values: ['try', 'confirm', 'cancel'] },
      { column: 'outcome', values: ['done', 'blocked', 'null'] },
    ],
    meaning:
      'a barrier row changed outside Baton: a try, confirm or cancel could run twice, or not at all',
  },
  {
    table: 'idempotency_keys',
    keySql: `coalesce(nullif(r.caller, '') || ': ', '') || r.key`,
    sealSql: (s, x) =>
      `${s}.idempotency_seal(${col('key', x)}, ${col('action', x)}, ${col('state', x)}, ${col('result', x)}, ${col('caller', x)})`,
    recoverable: [{ column: 'state', values: ['done', 'undone', 'blocked'] }],
    meaning:
      'an idempotency key changed outside Baton: an action could run twice, or its undo be skipped',
  },
];

/** The sealed versions table of an owned entity. */
export function entityVersionsTable(tableSql: string, entity: string): SealedTable {
  return {
    table: tableSql,
    keySql: `'${entity} ' || r.id::text`,
    sealSql: (s, x) =>
      `${s}.entity_version_seal('${entity}', (${col('id', x)})::text, ${col('version', x)})`,
    recoverable: [],
    meaning: `a version of ${entity} changed outside Baton: lookups and the caretaker would report a version the owner never announced`,
  };
}
