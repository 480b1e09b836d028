import type { Executor } from './db/executor.ts';
import { loadMigrations } from './db/migrate.ts';
import { schemaIdent } from './db/sql.ts';
import { BatonError } from './errors.ts';

/**
 * A point-in-time picture of one service's Baton tables, for operators
 * (`baton status`) and health checks. Read-only; each figure is read by one
 * statement, so figures taken a moment apart may disagree slightly.
 */
export interface BatonStatus {
  schema: string;
  migrations: {
    /** Highest migration applied to this database. */
    applied: number;
    /** Highest migration this version of Baton ships. */
    latest: number;
  };
  outbox: {
    /** Committed events the relay has not sequenced yet (`seq IS NULL`). */
    backlog: number;
    /**
     * Age in seconds of the oldest unsequenced event, by its `occurredAt`
     * (0 when the backlog is empty). A growing lag means no relay is running
     * or it is failing.
     */
    relayLagSeconds: number;
    /** The last feed position handed out. */
    lastSequenced: number;
    /** Events at or below this position were pruned from the outbox. */
    prunedThrough: number;
  };
  subscriptions: SubscriptionStatus[];
  /** Dead letters over all subscriptions. */
  deadLetters: number;
}

export interface SubscriptionStatus {
  name: string;
  source: string;
  /** Position in the source the next fetch starts after (null before the first batch). */
  cursor: string | null;
  /** Inbox entries waiting for their handler (including ones waiting for a retry). */
  pending: number;
  /** Seconds since the oldest pending entry was received (0 when none). */
  oldestPendingAgeSeconds: number;
  deadLetters: number;
  /** When the cursor last moved (or the subscription was created). */
  updatedAt: string;
}

/** Baton's tables are not in this database (or not in this schema). */
export class SchemaNotInstalledError extends BatonError {
  constructor(readonly schema: string) {
    super(
      'BATON_SCHEMA_NOT_INSTALLED',
      `Baton's schema "${schema}" is not installed in this database: run \`baton migrate\` (with the same database URL and --schema), or point at the database where Baton is installed.`,
    );
  }
}

/**
 * Reads the status of Baton in `schema`. Throws `SchemaNotInstalledError`
 * if Baton was never migrated there.
 */
export async function readStatus(
  db: Executor,
  options: { schema?: string } = {},
): Promise<BatonStatus> {
  const schema = options.schema ?? 'baton';
  const s = schemaIdent(schema);
  const applied = await lastAppliedMigration(db, schema);
  if (applied === undefined) throw new SchemaNotInstalledError(schema);
  const latest = (await loadMigrations(schema)).at(-1)?.id ?? 0;
  const outbox = await db.query<OutboxRow>(
    `SELECT
       (SELECT count(*) FROM ${s}.outbox WHERE seq IS NULL) AS backlog,
       (SELECT coalesce(greatest(extract(epoch FROM now() - min(occurred_at)), 0), 0)::float8
          FROM ${s}.outbox WHERE seq IS NULL) AS lag,
       r.last_seq, r.pruned_through
     FROM ${s}.relay_state r`,
  );
  const subscriptions = await db.query<SubscriptionRow>(
    `SELECT s.name, s.source, s.cursor, s.updated_at,
       count(*) FILTER (WHERE i.status = 'pending') AS pending,
       count(*) FILTER (WHERE i.status = 'dead') AS dead,
       coalesce(greatest(extract(epoch FROM now() - min(i.received_at)
         FILTER (WHERE i.status = 'pending')), 0), 0)::float8 AS oldest_pending
     FROM ${s}.subscriptions s
     LEFT JOIN ${s}.inbox i ON i.subscription = s.name AND i.status IN ('pending', 'dead')
     GROUP BY s.name
     ORDER BY s.name`,
  );
  const o = outbox.rows[0];
  const subs = subscriptions.rows.map(toSubscriptionStatus);
  return {
    schema,
    migrations: { applied, latest },
    outbox: {
      backlog: Number(o?.backlog ?? 0),
      relayLagSeconds: roundSeconds(o?.lag ?? 0),
      lastSequenced: Number(o?.last_seq ?? 0),
      prunedThrough: Number(o?.pruned_through ?? 0),
    },
    subscriptions: subs,
    deadLetters: subs.reduce((sum, sub) => sum + sub.deadLetters, 0),
  };
}

/** The highest applied migration, or undefined if Baton was never installed in `schema`. */
export async function lastAppliedMigration(
  db: Executor,
  schema: string,
): Promise<number | undefined> {
  const s = schemaIdent(schema);
  const exists = await db.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [
    `${s}.migrations`,
  ]);
  if (!exists.rows[0]?.ok) return undefined;
  const r = await db.query<{ id: number | null }>(`SELECT max(id) AS id FROM ${s}.migrations`);
  return r.rows[0]?.id ?? undefined;
}

interface OutboxRow {
  backlog: string;
  lag: number;
  last_seq: string;
  pruned_through: string;
}

interface SubscriptionRow {
  name: string;
  source: string;
  cursor: string | null;
  updated_at: Date;
  pending: string;
  dead: string;
  oldest_pending: number;
}

function toSubscriptionStatus(row: SubscriptionRow): SubscriptionStatus {
  return {
    name: row.name,
    source: row.source,
    cursor: row.cursor,
    pending: Number(row.pending),
    oldestPendingAgeSeconds: roundSeconds(row.oldest_pending),
    deadLetters: Number(row.dead),
    updatedAt: row.updated_at.toISOString(),
  };
}

/** Millisecond precision is enough for an age and keeps the JSON readable. */
function roundSeconds(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
