import { channelsFor } from '../core/channels.ts';
import { InvalidInputError } from '../core/errors.ts';
import type { EventInput } from '../core/event.ts';
import type { Database, Executor } from '../db/executor.ts';
import { schemaIdent } from '../db/sql.ts';
import type { ClientAuth } from '../http/auth.ts';
import { Outbox } from '../messaging/outbox.ts';
import {
  type OnDeletePolicy,
  validateEntity,
  validateReference,
} from '../references/definitions.ts';
import { versionsTableSql } from '../references/entity-capture.ts';
import { EntityOwner } from '../references/entity-owner.ts';
import { EntityReplication } from '../references/entity-replication.ts';
import { ownerClient } from '../references/owner-client.ts';
import { Reference } from '../references/reference.ts';
import { ReplicaStore } from '../references/replica-store.ts';
import type { ReconcileTarget } from './caretaker.ts';
import type { OwnedEntity } from './integrity.ts';

export interface DatabaseTargetsOptions {
  schema: string;
  /** Credentials for the owners' endpoints (one secret or token for all of them). */
  auth: ClientAuth;
  /**
   * This service's name, the `source` of events a repair publishes (apologies,
   * restrict votes). Default: the name the service recorded when it installed
   * its entities or references (`settings.service`).
   */
  service?: string;
  /** Per call to an owner (default: the owner client's). */
  ownerTimeoutMs?: number;
}

export interface DatabaseTargets {
  targets: ReconcileTarget[];
  /** The entities this service owns, as recorded (their versions tables are checked). */
  owned: OwnedEntity[];
  /**
   * The service name used for published events. Undefined when the database
   * does not record it and none was given: then `publish` throws, so only a
   * dry run (which publishes nothing) can use these targets.
   */
  service: string | undefined;
  /** Publishes through this database's outbox (what repairs publish goes out with the service's relay). */
  publish: (tx: Executor, events: EventInput | readonly EventInput[]) => Promise<unknown>;
}

interface ReplicaRow {
  entity: string;
  id_type: string;
  owner: string;
  owner_url: string;
  subscription: string;
}

interface ReferenceRow {
  table_name: string;
  column_name: string;
  entity: string;
  on_delete: string;
  snapshot_columns: Record<string, string>;
}

/**
 * The caretaker's targets rebuilt from what a service recorded in its own
 * database (`replicas`, `entity_references`) — for running the caretaker
 * outside the service's process (`baton reconcile`). Repairs act exactly as
 * the service would: the same replica stores, references and policies; events
 * they publish go into this database's outbox for the service's relay.
 *
 * What the database does not hold stays with the service: invariants (their
 * SQL and remedies are code) and `onOwnerUnreachable` (only used on writes).
 */
export async function targetsFromDatabase(
  db: Database,
  options: DatabaseTargetsOptions,
): Promise<DatabaseTargets> {
  const schemaSql = schemaIdent(options.schema);
  const replicas = await db.query<ReplicaRow>(
    `SELECT entity, id_type, owner, owner_url, subscription FROM ${schemaSql}.replicas ORDER BY entity`,
  );
  const referenceRows = await db.query<ReferenceRow>(
    `SELECT table_name, column_name, entity, on_delete, snapshot_columns
     FROM ${schemaSql}.entity_references ORDER BY name`,
  );
  const service = options.service ?? (await recordedService(db, schemaSql));
  const publish = publisher(options.schema, schemaSql, service);
  const targets = replicas.rows.map((row) => {
    const store = new ReplicaStore(schemaSql, row.entity);
    // `install()` is what sets it in the service; here the registry row is the record of it.
    store.idType = row.id_type;
    const owner = ownerClient({
      name: row.owner,
      url: row.owner_url,
      auth: options.auth,
      ...(options.ownerTimeoutMs === undefined ? {} : { timeoutMs: options.ownerTimeoutMs }),
    });
    const references = referenceRows.rows
      .filter((r) => r.entity === row.entity)
      .map((r) => new Reference(schemaSql, referenceFromRow(r), store, owner));
    const replication = new EntityReplication(
      schemaSql,
      store,
      () => references,
      publish,
      service ?? '',
      (id) => owner.lookup(row.entity, id),
    );
    return { replication, owner, subscription: row.subscription };
  });
  return { targets, owned: await ownedEntities(db, schemaSql, service), service, publish };
}

/** The entities the service recorded owning, able to announce their state again. */
async function ownedEntities(
  db: Database,
  schemaSql: string,
  service: string | undefined,
): Promise<OwnedEntity[]> {
  const rows = await db.query<{
    name: string;
    table_name: string;
    key_column: string;
    fields: string[];
    personal: string[];
    restrict_referrers: string[];
  }>(
    `SELECT name, table_name, key_column, fields, personal, restrict_referrers FROM ${schemaSql}.entities ORDER BY name`,
  );
  return rows.rows.map((row) => {
    const owner = new EntityOwner(
      db,
      schemaSql,
      validateEntity({
        name: row.name,
        table: row.table_name,
        key: row.key_column,
        fields: row.fields,
        personal: row.personal,
        restrictReferrers: row.restrict_referrers,
      }),
      { service: service ?? 'unknown', outboxChannel: '' },
    );
    return {
      name: row.name,
      versionsTable: versionsTableSql(schemaSql, row.name),
      announce: (id, above) => owner.announce(id, above),
    };
  });
}

async function recordedService(db: Database, schemaSql: string): Promise<string | undefined> {
  const r = await db.query<{ value: string }>(
    `SELECT value FROM ${schemaSql}.settings WHERE name = 'service'`,
  );
  return r.rows[0]?.value;
}

function publisher(
  schema: string,
  schemaSql: string,
  service: string | undefined,
): DatabaseTargets['publish'] {
  if (service === undefined) {
    return async () => {
      throw new InvalidInputError(
        "cannot publish a repair's events: this database does not record its service's name; pass it (baton reconcile --service <name>).",
      );
    };
  }
  const outbox = new Outbox({
    schemaSql,
    source: service,
    strictTypes: false,
    maxPayloadBytes: 256 * 1024,
    notifyChannel: channelsFor(schema).outbox,
    notifyMinIntervalMs: 0, // a CLI repair publishes little: wake the relay every time
  });
  return (tx, events) => outbox.publish(tx, events);
}

function referenceFromRow(row: ReferenceRow) {
  try {
    return validateReference({
      table: row.table_name,
      column: row.column_name,
      entity: row.entity,
      onDelete: row.on_delete as OnDeletePolicy,
      snapshotColumns: row.snapshot_columns,
    });
  } catch (error) {
    throw new InvalidInputError(
      `the recorded reference ${row.table_name}.${row.column_name} is not valid (${(error as Error).message}); it was changed by hand? Restart the service to record it again.`,
      { cause: error },
    );
  }
}
