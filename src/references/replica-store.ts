import { InvalidInputError, TerminalError } from '../core/errors.ts';
import type { Database, Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';
import { quoteIdent } from '../db/sql.ts';
import type { MemberSource } from './members.ts';
import { DELETED_CONTENT_SQL, LIVE_STATE_CODE, liveContentSql } from './members.ts';
import type { ReplicaState } from './replica-states.ts';

export interface ReplicaRow {
  id: string;
  state: ReplicaState;
  version: number;
  fields: Record<string, unknown>;
  personal: string[];
}

/**
 * The referrer's local copy of another service's entity: one table per
 * entity (`<schema>.replica_<entity>`), whose `id` has the type of the
 * referencing columns so they can hold a real foreign key to it.
 */
export class ReplicaStore {
  readonly tableSql: string;
  /** SQL type of `id` (the referencing columns' type), known once installed. */
  idType = 'text';

  constructor(
    private readonly schemaSql: string,
    readonly entity: string,
  ) {
    this.tableSql = `${schemaSql}.${quoteIdent(`replica_${entity}`)}`;
  }

  /** Creates the replica table (id of `idType`) and registers it. Idempotent; refuses a changed id type. */
  async install(
    db: Database,
    idType: string,
    owner: { name: string; url: string; subscription: string },
  ): Promise<void> {
    this.idType = idType;
    await db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [
        `baton:replica:${this.entity}`,
      ]);
      const existing = await tx.query<{ id_type: string }>(
        `SELECT id_type FROM ${this.schemaSql}.replicas WHERE entity = $1`,
        [this.entity],
      );
      const known = existing.rows[0]?.id_type;
      if (known && known !== idType) {
        throw new InvalidInputError(
          `references to ${this.entity} use column type ${idType}, but its replica was created with ${known}: all references to one entity need the same column type.`,
        );
      }
      await tx.query(
        `CREATE TABLE IF NOT EXISTS ${this.tableSql} (
           id ${idType} PRIMARY KEY,
           state text NOT NULL CHECK (state IN ('ACTIVE', 'UNVERIFIED', 'DELETING', 'DELETED')),
           version bigint NOT NULL,
           fields jsonb NOT NULL DEFAULT '{}',
           personal text[] NOT NULL DEFAULT '{}',
           updated_at timestamptz NOT NULL DEFAULT now())`,
      );
      // The caretaker's hash of the copied fields, kept with the row: a generated
      // column follows every change of `fields`, also one made by hand with triggers off.
      // Looked up first: ALTER TABLE would lock the table at every start-up.
      const hashed = await tx.query(
        `SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'fields_hash' AND NOT attisdropped`,
        [this.tableSql],
      );
      if (hashed.rows.length === 0) {
        await tx.query(
          `ALTER TABLE ${this.tableSql} ADD COLUMN fields_hash bigint
             GENERATED ALWAYS AS (${this.schemaSql}.fields_hash(fields)) STORED`,
        );
      }
      await tx.query(
        `INSERT INTO ${this.schemaSql}.replicas (entity, table_name, id_type, owner, owner_url, subscription)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (entity) DO UPDATE SET owner = excluded.owner, owner_url = excluded.owner_url,
           subscription = excluded.subscription`,
        [this.entity, `replica_${this.entity}`, idType, owner.name, owner.url, owner.subscription],
      );
    });
  }

  /** Reads and locks (FOR UPDATE) one replica row; undefined when the replica never saw the id. */
  async lock(tx: Executor, id: string): Promise<ReplicaRow | undefined> {
    try {
      const r = await queryPrepared<RawRow>(
        tx,
        `SELECT id::text AS id, state, version, fields, personal FROM ${this.tableSql} WHERE id = $1::text::${this.idType} FOR UPDATE`,
        [id],
      );
      return r.rows[0] && toRow(r.rows[0]);
    } catch (error) {
      // An id that cannot be of the key's type will never apply: a dead letter at once, not ten retries.
      if ((error as { code?: string }).code?.startsWith('22')) {
        throw new TerminalError(
          `${this.entity} id ${JSON.stringify(id.slice(0, 100))} is not a valid ${this.idType} (the type of this service's references to ${this.entity}): ${(error as Error).message}`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /** Reads one row under a share lock (what a reference check takes). */
  async share(tx: Executor, id: string): Promise<ReplicaRow | undefined> {
    const r = await queryPrepared<RawRow>(
      tx,
      `SELECT id::text AS id, state, version, fields, personal FROM ${this.tableSql} WHERE id = $1::text::${this.idType} FOR SHARE`,
      [id],
    );
    return r.rows[0] && toRow(r.rows[0]);
  }

  /**
   * Writes a row as a max-version register: only over an older version (or
   * an UNVERIFIED placeholder). Returns whether it wrote.
   */
  async put(tx: Executor, row: ReplicaRow): Promise<boolean> {
    const guard = `WHERE ${this.tableSql}.version < excluded.version OR ${this.tableSql}.state = 'UNVERIFIED'`;
    const r = await queryPrepared(
      tx,
      `INSERT INTO ${this.tableSql} (id, state, version, fields, personal, updated_at)
       VALUES ($1::text::${this.idType}, $2, $3, $4, $5, now())
       ON CONFLICT (id) DO UPDATE SET state = excluded.state, version = excluded.version,
         fields = excluded.fields, personal = excluded.personal, updated_at = now()
       ${guard}`,
      [row.id, row.state, row.version, row.fields, row.personal],
    );
    return (r.rowCount ?? 0) > 0;
  }

  /**
   * The replica's members for the caretaker: every row but UNVERIFIED
   * placeholders (checked one by one), with its version and a content hash
   * of its state and — while it lives — its fields (the stored
   * `fields_hash`, which follows every change of `fields`, triggers or not).
   * Equal to the owner's members (owner-members.ts) when the copy is right.
   */
  memberSource(): MemberSource {
    const code = `CASE r.state WHEN 'ACTIVE' THEN ${LIVE_STATE_CODE.active} WHEN 'DELETING' THEN ${LIVE_STATE_CODE.deleting} ELSE 0 END`;
    return {
      sql: `SELECT (r.id)::text AS id, r.version,
              CASE WHEN r.state = 'DELETED' THEN ${DELETED_CONTENT_SQL}
                   ELSE ${liveContentSql(code, 'r.fields_hash', 'r.personal')} END AS content
            FROM ${this.tableSql} r WHERE r.state <> 'UNVERIFIED'`,
    };
  }
}

interface RawRow {
  id: string;
  state: ReplicaState;
  version: string;
  fields: Record<string, unknown>;
  personal: string[];
}

function toRow(r: RawRow): ReplicaRow {
  return {
    id: r.id,
    state: r.state,
    version: Number(r.version),
    fields: r.fields,
    personal: r.personal,
  };
}
