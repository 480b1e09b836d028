import { InvalidInputError } from '../core/errors.ts';
import type { Database, Executor } from '../db/executor.ts';
import { quoteIdent } from '../db/sql.ts';
import { type EntityDefinition, type EntityLookup, tableSql } from './definitions.ts';
import {
  type EntityColumns,
  installCapture,
  lookupFunction,
  readColumnTypes,
  versionsTableSql,
} from './entity-capture.ts';
import type { MemberSource } from './members.ts';
import { ownerMemberSource } from './members.ts';
import { type DeleteOutcome, type DeleteVote, RestrictDelete } from './restrict-delete.ts';
import { pinnedSetLocal } from './state-form.ts';

export type { DeleteOutcome, DeleteVote } from './restrict-delete.ts';

/**
 * Owner side of one entity. `install()` puts a row trigger on the table (see
 * entity-capture.ts), so every insert, update and delete — also plain SQL
 * outside Baton — writes the entity's state event into the outbox in the
 * same transaction. A delete leaves a tombstone. Entities with `restrict`
 * referrers are deleted through `requestDelete` (fence → drain → finalise);
 * the trigger refuses any other delete of them.
 */
export class EntityOwner {
  private readonly table: string;
  private readonly key: string;
  /** The key's and copied fields' types, read at `install()` (or on first use). */
  private columns: Promise<EntityColumns> | undefined;
  private readonly restrict: RestrictDelete;

  constructor(
    private readonly db: Database,
    private readonly schemaSql: string,
    readonly def: Required<EntityDefinition>,
    private readonly settings: { service: string; outboxChannel: string; maxPayloadBytes?: number },
  ) {
    this.table = tableSql(def.table);
    this.key = quoteIdent(def.key);
    this.restrict = new RestrictDelete({
      db,
      schemaSql,
      def,
      table: this.table,
      keyEquals: (executor) => this.keyEquals(executor),
      lookup: (id, executor) => this.lookup(id, executor),
      emitState: (tx, id, state) => this.emitCurrentState(tx, id, state),
    });
  }

  /** Creates or updates the capture (trigger, versions table) and Baton's record of the entity. Idempotent. */
  async install(): Promise<void> {
    const s = this.schemaSql;
    const d = this.def;
    await this.db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [
        `baton:install:${d.name}`,
      ]);
      // The table as the caller's search_path finds it; everything after runs pinned.
      const columns = await readColumnTypes(tx, d);
      await requireUniqueKey(tx, d);
      await tx.query(pinnedSetLocal());
      this.columns = Promise.resolve(columns);
      await tx.query(
        `INSERT INTO ${s}.settings (name, value) VALUES ('service', $1), ('outbox_channel', $2), ('max_payload_bytes', $3)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value`,
        [
          this.settings.service,
          this.settings.outboxChannel,
          String(this.settings.maxPayloadBytes ?? 256 * 1024),
        ],
      );
      await tx.query(
        `INSERT INTO ${s}.entities (name, table_name, key_column, fields, personal, restrict_referrers)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO UPDATE SET table_name = excluded.table_name, key_column = excluded.key_column,
           fields = excluded.fields, personal = excluded.personal, restrict_referrers = excluded.restrict_referrers`,
        [d.name, d.table, d.key, d.fields, d.personal, d.restrictReferrers],
      );
      await installCapture(tx, { def: d, schemaSql: s, ...columns });
    });
  }

  /** The key's and fields' types (read once; `install()` reads them anyway). */
  private columnTypes(executor: Executor): Promise<EntityColumns> {
    this.columns ??= readColumnTypes(executor, this.def);
    this.columns.catch(() => {
      this.columns = undefined;
    });
    return this.columns;
  }

  /**
   * The entity as the owner knows it now: active/deleting with its fields
   * (in their state form), deleted (tombstone), or absent. Needs `install()`.
   */
  async lookup(id: string, executor: Executor = this.db): Promise<EntityLookup> {
    const s = this.schemaSql;
    const d = this.def;
    const live = await executor.query<{
      fields: Record<string, unknown>;
      version: string | null;
      deleting: boolean;
    }>(`SELECT fields, version, deleting FROM ${lookupFunction(s, d.name)}($1)`, [id]);
    const row = live.rows[0];
    if (row) {
      return {
        entity: d.name,
        id,
        state: row.deleting ? 'deleting' : 'active',
        version: Number(row.version ?? 0),
        fields: row.fields,
        personal: [...d.personal],
      };
    }
    const tomb = await executor.query<{ version: string; fields: Record<string, unknown> }>(
      `SELECT version, fields FROM ${s}.tombstones WHERE entity = $1 AND id = $2`,
      [d.name, id],
    );
    const t = tomb.rows[0];
    if (t) {
      return {
        entity: d.name,
        id,
        state: 'deleted',
        version: Number(t.version),
        fields: t.fields,
        personal: [...d.personal],
      };
    }
    return {
      entity: d.name,
      id,
      state: 'absent',
      version: 0,
      fields: {},
      personal: [...d.personal],
    };
  }

  /**
   * Announces the entity's state again, at a version above `above`: a
   * referrer holding a version the owner never issued — its replica edited
   * by hand, or this database restored from an older backup — would ignore
   * every event up to that version, so the owner's counter moves past it and
   * the current state (active, deleting, or deleted — writing a tombstone
   * for an id it has no record of) goes out to every referrer as an
   * ordinary state event. Returns what was announced.
   */
  async announce(id: string, above: number): Promise<EntityLookup> {
    const d = this.def;
    const s = this.schemaSql;
    return this.db.transaction(async (tx) => {
      const { key } = await this.columnTypes(tx);
      // The row's lock orders this announcement with concurrent writes of the same id.
      await tx.query(
        `SELECT 1 FROM ${this.table} WHERE ${this.key} = $1::text::${key.type} FOR UPDATE`,
        [id],
      );
      await raiseCounter(tx, s, `${d.name}:${id}`, above, "announced above a referrer's version");
      const current = await this.lookup(id, tx);
      const state = current.state === 'absent' ? 'deleted' : current.state;
      const r = await tx.query<{ v: string }>(
        `SELECT ${s}.emit_entity_event($1, $2, $3, $4, $5) AS v`,
        [d.name, id, state, current.fields, d.personal],
      );
      const version = Number(r.rows[0]?.v);
      await this.recordVersion(tx, id, version);
      if (state === 'deleted') {
        await tx.query(
          `INSERT INTO ${s}.tombstones (entity, id, version, fields) VALUES ($1, $2, $3, $4)
           ON CONFLICT (entity, id) DO UPDATE SET version = excluded.version, fields = excluded.fields`,
          [d.name, id, version, current.fields],
        );
      }
      return { ...current, state, version } as EntityLookup;
    });
  }

  /**
   * Deletes the entity. Without restrict referrers: at once (the trigger
   * emits the tombstone). With them: announces DELETING and waits for their
   * votes (see `recordVote`); the outcome is `pending` until every referrer
   * answered — a referrer that is down keeps it pending, visibly.
   */
  requestDelete(id: string): Promise<DeleteOutcome> {
    return this.restrict.requestDelete(id);
  }

  /** Where a coordinated delete stands. */
  deleteStatus(id: string, executor: Executor = this.db): Promise<DeleteOutcome> {
    return this.restrict.deleteStatus(id, executor);
  }

  /**
   * Records a referrer's vote (inside the handler transaction of the vote
   * event) and decides: any veto restores the entity; all prepared
   * finalises the delete (see restrict-delete.ts).
   */
  recordVote(tx: Executor, vote: DeleteVote): Promise<void> {
    return this.restrict.recordVote(tx, vote);
  }

  /** `key = $1` with the parameter cast to the key's type, so the primary-key index is used. */
  private async keyEquals(executor: Executor, param = '$1'): Promise<string> {
    const { key } = await this.columnTypes(executor);
    return `${this.key} = ${param}::text::${key.type}`;
  }

  /** Emits the row's current fields with `state` (a version bump); returns the new version. */
  private async emitCurrentState(
    tx: Executor,
    id: string,
    state: 'active' | 'deleting',
  ): Promise<number> {
    const current = await this.lookup(id, tx);
    const r = await tx.query<{ v: string }>(
      `SELECT ${this.schemaSql}.emit_entity_event($1, $2, $3, $4, $5) AS v`,
      [this.def.name, id, state, current.fields, this.def.personal],
    );
    const version = Number(r.rows[0]?.v);
    await this.recordVersion(tx, id, version);
    return version;
  }

  /** Records an id's latest state event in the versions table (what the capture trigger does for writes). */
  private async recordVersion(tx: Executor, id: string, version: number): Promise<void> {
    const { key } = await this.columnTypes(tx);
    const s = this.schemaSql;
    await tx.query(
      `INSERT INTO ${versionsTableSql(s, this.def.name)} (id, version, seal)
       VALUES ($1::text::${key.type}, $2, ${s}.entity_version_seal($3, $1, $2))
       ON CONFLICT (id) DO UPDATE SET version = excluded.version, seal = excluded.seal`,
      [id, version, this.def.name],
    );
  }

  /** The owner's members (id, version, state and fields), as SQL for the caretaker's set reconciliation. */
  async memberSource(executor: Executor = this.db): Promise<MemberSource> {
    const columns = await this.columnTypes(executor);
    return ownerMemberSource({
      entity: this.def.name,
      keyColumn: this.def.key,
      personal: this.def.personal,
      ...columns,
      schemaSql: this.schemaSql,
    });
  }
}

/** Refuses a key that does not identify rows: it must be NOT NULL and unique (a primary key). */
async function requireUniqueKey(tx: Executor, def: Required<EntityDefinition>): Promise<void> {
  const r = await tx.query<{ not_null: boolean; unique: boolean }>(
    `SELECT a.attnotnull AS not_null,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique
               AND i.indpred IS NULL AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum) AS unique
     FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`,
    [tableSql(def.table), def.key],
  );
  const row = r.rows[0];
  if (!row?.not_null || !row.unique) {
    throw new InvalidInputError(
      `entity ${def.name}: its key "${def.key}" must identify one row of ${def.table}: make it the primary key (or NOT NULL with a unique index on it alone).`,
    );
  }
}

/**
 * Moves a key's counter up to at least `to` (the next event gets a higher
 * version) and records the versions it passes over, so that the caretaker
 * does not take them for deleted events.
 */
export async function raiseCounter(
  tx: Executor,
  schemaSql: string,
  key: string,
  to: number,
  reason: string,
): Promise<void> {
  await tx.query(
    `WITH before AS (
       SELECT coalesce((SELECT version FROM ${schemaSql}.stream_versions WHERE stream_key = $1 FOR UPDATE), 0) AS v),
     skipped AS (
       INSERT INTO ${schemaSql}.version_skips (key, from_version, to_version, reason)
       SELECT $1, b.v + 1, $2, $3 FROM before b WHERE $2 > b.v
       ON CONFLICT (key, from_version) DO UPDATE SET to_version = greatest(version_skips.to_version, excluded.to_version))
     INSERT INTO ${schemaSql}.stream_versions AS sv (stream_key, version, seal)
     VALUES ($1, $2, ${schemaSql}.counter_seal($1, $2))
     ON CONFLICT (stream_key) DO UPDATE SET version = greatest(sv.version, excluded.version),
       seal = ${schemaSql}.counter_seal(sv.stream_key, greatest(sv.version, excluded.version))`,
    [key, to, reason],
  );
}
