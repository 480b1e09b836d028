import { type FieldColumn, ownerFieldsHashSql } from '../caretaker/fields-hash.ts';
import type { MemberSource } from '../caretaker/sql-set-side.ts';
import type { Database, Executor } from '../db/executor.ts';
import { quoteIdent } from '../db/sql.ts';
import { InvalidInputError } from '../errors.ts';
import { type EntityDefinition, type EntityLookup, tableSql } from './definitions.ts';

/** What `requestDelete` leads to. */
export type DeleteOutcome =
  | { state: 'done' }
  | { state: 'absent' }
  | { state: 'pending'; waitingFor: string[] }
  | { state: 'refused'; reason: string };

export interface DeleteVote {
  entity: string;
  id: string;
  version: number;
  referrer: string;
  vote: 'prepared' | 'vetoed';
  references: number;
}

/**
 * Owner side of one entity. `install()` puts a row trigger on the table, so
 * every insert, update and delete — also plain SQL outside Baton — writes the
 * entity's state event into the outbox in the same transaction. A delete
 * leaves a tombstone. Entities with `restrict` referrers are deleted through
 * `requestDelete` (fence → drain → finalise); the trigger refuses any other
 * delete of them.
 */
export class EntityOwner {
  private readonly table: string;
  private readonly key: string;
  private keyType: Promise<string> | undefined;
  /** The copied fields' column types, read at `install()` (the caretaker's fields hash uses them). */
  private fieldColumns: FieldColumn[] | undefined;

  constructor(
    private readonly db: Database,
    private readonly schemaSql: string,
    readonly def: Required<EntityDefinition>,
    private readonly settings: { service: string; outboxChannel: string; maxPayloadBytes?: number },
  ) {
    this.table = tableSql(def.table);
    this.key = quoteIdent(def.key);
  }

  /** Creates or updates the capture trigger (and one refusing TRUNCATE, which skips row triggers) and Baton's record of the entity. Idempotent. */
  async install(): Promise<void> {
    const s = this.schemaSql;
    const d = this.def;
    await this.db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [
        `baton:install:${d.name}`,
      ]);
      const columns = await tx.query<FieldColumn>(
        `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, typ.typtype
         FROM pg_attribute a JOIN pg_type typ ON typ.oid = a.atttypid
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`,
        [d.table],
      );
      if (columns.rows.length === 0) {
        throw new InvalidInputError(
          `entity ${d.name}: table "${d.table}" does not exist. Create it before installing the entity.`,
        );
      }
      const byName = new Map(columns.rows.map((r) => [r.name, r]));
      for (const column of [d.key, ...d.fields]) {
        if (!byName.has(column)) {
          throw new InvalidInputError(
            `entity ${d.name}: table "${d.table}" has no column "${column}".`,
          );
        }
      }
      this.fieldColumns = d.fields.map((f) => byName.get(f) as FieldColumn);
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
      await tx.query(
        `CREATE OR REPLACE TRIGGER ${quoteIdent(`baton_capture_${d.name}`)}
         AFTER INSERT OR UPDATE OR DELETE ON ${this.table}
         FOR EACH ROW EXECUTE FUNCTION ${s}.capture_entity('${d.name}')`,
      );
      await tx.query(
        `CREATE OR REPLACE TRIGGER ${quoteIdent(`baton_no_truncate_${d.name}`)}
         BEFORE TRUNCATE ON ${this.table}
         FOR EACH STATEMENT EXECUTE FUNCTION ${s}.refuse_entity_truncate('${d.name}')`,
      );
    });
  }

  /** The entity as the owner knows it now: active/deleting with its fields, deleted (tombstone), or absent. */
  async lookup(id: string, executor: Executor = this.db): Promise<EntityLookup> {
    const s = this.schemaSql;
    const d = this.def;
    const live = await executor.query<{
      fields: Record<string, unknown>;
      version: string;
      deleting: boolean;
    }>(
      `SELECT ${this.fieldsSql()} AS fields, coalesce(v.version, 0) AS version,
              EXISTS (SELECT 1 FROM ${s}.delete_fences f WHERE f.entity = $2 AND f.id = $1 AND f.state = 'pending') AS deleting
       FROM ${this.table} t
       LEFT JOIN ${s}.stream_versions v ON v.stream_key = 'baton.entity:' || $2 || ':' || $1
       WHERE t.${await this.keyEquals(executor)}`,
      [id, d.name],
    );
    const row = live.rows[0];
    if (row) {
      return {
        entity: d.name,
        id,
        state: row.deleting ? 'deleting' : 'active',
        version: Number(row.version),
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
   * Deletes the entity. Without restrict referrers: at once (the trigger
   * emits the tombstone). With them: announces DELETING and waits for their
   * votes (see `recordVote`); the outcome is `pending` until every referrer
   * answered — a referrer that is down keeps it pending, visibly.
   */
  async requestDelete(id: string): Promise<DeleteOutcome> {
    const d = this.def;
    if (d.restrictReferrers.length === 0) {
      const r = await this.db.query(
        `DELETE FROM ${this.table} WHERE ${await this.keyEquals(this.db)}`,
        [id],
      );
      return r.rowCount ? { state: 'done' } : { state: 'absent' };
    }
    return this.db.transaction(async (tx) => {
      const row = await tx.query(
        `SELECT 1 FROM ${this.table} WHERE ${await this.keyEquals(tx)} FOR UPDATE`,
        [id],
      );
      if (row.rows.length === 0)
        return (await this.deleteStatus(id, tx)).state === 'done'
          ? { state: 'done' }
          : { state: 'absent' };
      const fence = await tx.query<{ state: string }>(
        `SELECT state FROM ${this.schemaSql}.delete_fences WHERE entity = $1 AND id = $2 FOR UPDATE`,
        [d.name, id],
      );
      if (fence.rows[0]?.state === 'pending') return this.deleteStatus(id, tx);
      const version = await this.emitCurrentState(tx, id, 'deleting');
      await tx.query(
        `INSERT INTO ${this.schemaSql}.delete_fences (entity, id, state, version) VALUES ($1, $2, 'pending', $3)
         ON CONFLICT (entity, id) DO UPDATE SET state = 'pending', version = excluded.version, reason = NULL,
           requested_at = now(), decided_at = NULL`,
        [d.name, id, version],
      );
      return { state: 'pending', waitingFor: [...d.restrictReferrers] };
    });
  }

  /** Where a coordinated delete stands. */
  async deleteStatus(id: string, executor: Executor = this.db): Promise<DeleteOutcome> {
    const d = this.def;
    const fence = await executor.query<{ state: string; reason: string | null; version: string }>(
      `SELECT state, reason, version FROM ${this.schemaSql}.delete_fences WHERE entity = $1 AND id = $2`,
      [d.name, id],
    );
    const f = fence.rows[0];
    if (f?.state === 'refused') return { state: 'refused', reason: f.reason ?? 'vetoed' };
    if (f?.state === 'pending') {
      const votes = await executor.query<{ referrer: string }>(
        `SELECT referrer FROM ${this.schemaSql}.delete_votes WHERE entity = $1 AND id = $2 AND version = $3`,
        [d.name, id, f.version],
      );
      const voted = new Set(votes.rows.map((v) => v.referrer));
      return { state: 'pending', waitingFor: d.restrictReferrers.filter((r) => !voted.has(r)) };
    }
    const lookup = await this.lookup(id, executor);
    if (lookup.state === 'deleted') return { state: 'done' };
    if (lookup.state === 'absent') return { state: 'absent' };
    return f?.state === 'done' ? { state: 'done' } : { state: 'absent' };
  }

  /**
   * Records a referrer's vote (inside the handler transaction of the vote
   * event) and decides: any veto restores the entity (ACTIVE again, the
   * delete refused with the referrer's reason); all prepared finalises the
   * delete. Votes for an older fence version are kept but change nothing.
   */
  async recordVote(tx: Executor, vote: DeleteVote): Promise<void> {
    const d = this.def;
    const s = this.schemaSql;
    await tx.query(
      `INSERT INTO ${s}.delete_votes (entity, id, version, referrer, vote, reference_count)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
      [d.name, vote.id, vote.version, vote.referrer, vote.vote, vote.references],
    );
    const fence = await tx.query<{ version: string }>(
      `SELECT version FROM ${s}.delete_fences WHERE entity = $1 AND id = $2 AND state = 'pending' FOR UPDATE`,
      [d.name, vote.id],
    );
    const current = fence.rows[0];
    if (!current || Number(current.version) !== vote.version) return;
    const votes = await tx.query<{ referrer: string; vote: string; reference_count: string }>(
      `SELECT referrer, vote, reference_count FROM ${s}.delete_votes WHERE entity = $1 AND id = $2 AND version = $3`,
      [d.name, vote.id, vote.version],
    );
    const veto = votes.rows.find((v) => v.vote === 'vetoed');
    if (veto) {
      const reason = `${veto.referrer} still has ${veto.reference_count} restrict reference(s) to ${d.name} ${vote.id}`;
      await tx.query(
        `UPDATE ${s}.delete_fences SET state = 'refused', reason = $3, decided_at = now() WHERE entity = $1 AND id = $2`,
        [d.name, vote.id, reason],
      );
      await this.emitCurrentState(tx, vote.id, 'active');
      return;
    }
    const prepared = new Set(votes.rows.map((v) => v.referrer));
    if (!d.restrictReferrers.every((r) => prepared.has(r))) return;
    await tx.query(
      `UPDATE ${s}.delete_fences SET state = 'finalizing' WHERE entity = $1 AND id = $2`,
      [d.name, vote.id],
    );
    await tx.query(`DELETE FROM ${this.table} WHERE ${await this.keyEquals(tx)}`, [vote.id]);
    await tx.query(
      `UPDATE ${s}.delete_fences SET state = 'done', decided_at = now() WHERE entity = $1 AND id = $2`,
      [d.name, vote.id],
    );
  }

  /** `key = $1` with the parameter cast to the key's type, so the primary-key index is used. */
  private async keyEquals(executor: Executor, param = '$1'): Promise<string> {
    this.keyType ??= executor
      .query<{ type: string | null }>(
        `SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute
         WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped`,
        [this.def.table, this.def.key],
      )
      .then((r) => {
        const type = r.rows[0]?.type;
        if (!type)
          throw new InvalidInputError(
            `entity ${this.def.name}: table "${this.def.table}" has no column "${this.def.key}".`,
          );
        return type;
      });
    this.keyType.catch(() => {
      this.keyType = undefined;
    });
    return `${this.key} = ${param}::text::${await this.keyType}`;
  }

  /** Emits the row's current fields with `state` (a version bump); returns the new version. */
  private async emitCurrentState(
    tx: Executor,
    id: string,
    state: 'active' | 'deleting',
  ): Promise<number> {
    const current = await this.lookup(id, tx);
    const r = await tx.query<{ v: string }>(
      `SELECT ${this.schemaSql}.emit_entity_state($1, $2, $3, $4, $5) AS v`,
      [this.def.name, id, state, current.fields, this.def.personal],
    );
    return Number(r.rows[0]?.v);
  }

  /** The row's declared fields as one jsonb value (of the row `t`), as its state events carry them. */
  private fieldsSql(): string {
    const fields = this.def.fields;
    return fields.length
      ? `jsonb_build_object(${fields.map((f) => `'${f}', t.${quoteIdent(f)}`).join(', ')})`
      : `'{}'::jsonb`;
  }

  /** The owner's (id, version, fields) set, as SQL fragments for the caretaker's set reconciliation. */
  memberSource(): MemberSource {
    // Before install() the types are unknown: every field then takes the event's own (slower) path.
    const columns = this.fieldColumns ?? this.def.fields.map((name) => ({ name, type: 'unknown' }));
    return ownerMemberSource({
      entity: this.def.name,
      tableSql: this.table,
      keySql: this.key,
      columns,
      schemaSql: this.schemaSql,
    });
  }
}

/**
 * An owner's members: its rows, each with the version of its entity stream
 * (joined for a whole-set scan, looked up per row for a scan of a few
 * buckets) and the hash of its copied fields.
 */
export function ownerMemberSource(o: {
  entity: string;
  /** The entity's table and key column, quoted. */
  tableSql: string;
  keySql: string;
  columns: readonly FieldColumn[];
  schemaSql: string;
}): MemberSource {
  const streamKey = `'${entityStreamPrefix(o.entity)}' || t.${o.keySql}::text`;
  return {
    fieldsHashSql: ownerFieldsHashSql(o.columns, o.schemaSql),
    fromSql: `${o.tableSql} t LEFT JOIN ${o.schemaSql}.stream_versions v ON v.stream_key = ${streamKey}`,
    idSql: `t.${o.keySql}::text`,
    versionSql: 'coalesce(v.version, 0)',
    subset: {
      fromSql: `${o.tableSql} t`,
      versionSql: `coalesce((SELECT v.version FROM ${o.schemaSql}.stream_versions v WHERE v.stream_key = ${streamKey}), 0)`,
    },
  };
}

/** The version counter of an entity's state events (a stream of its own, apart from the service's other events on the same key). */
export function entityStreamPrefix(entity: string): string {
  return `baton.entity:${entity}:`;
}
