import { type CaretakerStatus, readCaretakerStatus } from './caretaker/status.ts';
import { BatonError } from './core/errors.ts';
import type { Executor } from './db/executor.ts';
import { lastAppliedMigration, loadMigrations } from './db/migrate.ts';
import { schemaIdent } from './db/sql.ts';
import { type MessagingStatus, readMessagingStatus } from './messaging/status.ts';
import {
  type ReferenceTablesStatus,
  readReferenceTablesStatus,
  referencesInstalled,
} from './references/status.ts';
import { readSagasStatus, type SagasStatus } from './sagas/status.ts';

export type { LastReconcile, QuarantinedOrphan } from './caretaker/status.ts';
export type { OutboxStatus } from './messaging/status.ts';
export type { SubscriptionStatus } from './messaging/subscription-status.ts';
export type { PendingDelete } from './references/status.ts';
export type { ActiveSaga, SagasStatus, StuckSaga } from './sagas/status.ts';

/**
 * A point-in-time picture of one service's Baton tables, for operators
 * (`baton status`) and health checks, gathered from each part's own reader.
 * Read-only; each figure is read by one statement, so figures taken a moment
 * apart may disagree slightly.
 */
export interface BatonStatus extends MessagingStatus {
  schema: string;
  migrations: {
    /** Highest migration applied to this database. */
    applied: number;
    /** Highest migration this version of Baton ships. */
    latest: number;
  };
  /** Cross-service references: deletes, quarantine, policy actions, the caretaker's last run. */
  references: ReferencesStatus;
  /** Sagas orchestrated by this service: counts by state, stuck ones, the oldest unfinished. */
  sagas: SagasStatus;
}

export interface ReferencesStatus extends ReferenceTablesStatus, CaretakerStatus {
  /** False when the references tables are not in this database (migration 2 not applied): everything below is empty. */
  installed: boolean;
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
  return {
    schema,
    migrations: { applied, latest },
    ...(await readMessagingStatus(db, s)),
    references: await readReferencesStatus(db, s),
    sagas: await readSagasStatus(db, s),
  };
}

/** The references sections; empty on a database that has only the messaging tables. */
async function readReferencesStatus(db: Executor, s: string): Promise<ReferencesStatus> {
  if (!(await referencesInstalled(db, s))) {
    return {
      installed: false,
      pendingDeletes: { total: 0, items: [] },
      quarantine: { total: 0, items: [] },
      policyActions: { total: 0, apologies: 0, rowsAffected: 0 },
      missingObjects: [],
      lastReconcile: null,
    };
  }
  return {
    installed: true,
    ...(await readReferenceTablesStatus(db, s)),
    ...(await readCaretakerStatus(db, s)),
  };
}
