import { InvalidInputError, ReferenceViolation } from '../core/errors.ts';
import { inSpan } from '../core/tracing.ts';
import type { Database, Executor } from '../db/executor.ts';
import { derivedName, dollarQuote, quoteIdent, quoteLiteral } from '../db/sql.ts';
import { type ReferenceDefinition, referenceName, tableSql } from './definitions.ts';
import type { OwnerClient } from './owner-client.ts';
import { REFERENCEABLE, replicaStateOf } from './replica-states.ts';
import type { ReplicaStore } from './replica-store.ts';

/**
 * The names of what `install()` puts on a referencing table: the foreign key
 * to the replica, the check trigger and its function. Today's names where
 * they fit in 63 bytes (installations keep theirs), else shortened with a
 * hash (`derivedName`).
 */
export function referenceObjectNames(d: Pick<ReferenceDefinition, 'table' | 'column' | 'entity'>): {
  constraint: string;
  trigger: string;
  function: string;
} {
  return {
    constraint: derivedName(`baton_ref_${d.column}_${d.entity}`),
    trigger: derivedName(`baton_check_${d.column}_${d.entity}`),
    function: derivedName(`check_ref_${d.table.replace('.', '_')}_${d.column}`),
  };
}

/** SQLSTATE raised by the check trigger on a referencing table. */
export const REFERENCE_VIOLATION_SQLSTATE = 'BR001';

/**
 * Referrer side of one reference, e.g. `orders.customer_id → customer`.
 *
 * `install()` gives the referencing column a real foreign key to the replica
 * table (so, inside this service, a row can never point at an id the replica
 * does not have) and a trigger that refuses, under a share lock on the
 * replica row, a reference to an entity that is not ACTIVE (or UNVERIFIED).
 * The share lock is what the restrict protocol's fence waits for: a replica
 * row cannot turn DELETING while a transaction adding a reference to it is
 * still open.
 *
 * `check(tx, id)` is the friendly front door: it pulls an id the replica has
 * never seen from its owner first, and throws a typed `ReferenceViolation`.
 */
export class Reference {
  readonly name: string;

  constructor(
    private readonly schemaSql: string,
    readonly def: Required<ReferenceDefinition>,
    readonly replica: ReplicaStore,
    private readonly owner: OwnerClient,
  ) {
    this.name = referenceName(def);
  }

  /** The SQL type of the referencing column (the replica's id gets the same). */
  async columnType(db: Executor): Promise<string> {
    const r = await db.query<{ type: string | null }>(
      `SELECT format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
       WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`,
      [tableSql(this.def.table), this.def.column],
    );
    const type = r.rows[0]?.type;
    if (!type) {
      throw new InvalidInputError(
        `reference ${this.name}: table "${this.def.table}" has no column "${this.def.column}". Create it first.`,
      );
    }
    return type;
  }

  /**
   * Refuses, before anything is installed, a reference its table cannot
   * carry out — it would otherwise fail only when a delete arrives, in the
   * consumer, as a dead letter: set-null on a NOT NULL column, or snapshot
   * columns the table does not have.
   */
  async verifyTable(db: Executor): Promise<void> {
    const d = this.def;
    const r = await db.query<{ name: string; not_null: boolean }>(
      `SELECT attname AS name, attnotnull AS not_null FROM pg_attribute
       WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`,
      [tableSql(d.table)],
    );
    const columns = new Map(r.rows.map((c) => [c.name, c.not_null]));
    if (!columns.has(d.column)) await this.columnType(db); // throws the usual "has no column" error
    if (d.onDelete === 'set-null' && columns.get(d.column)) {
      throw new InvalidInputError(
        `reference ${this.name}: onDelete 'set-null' cannot work, ${d.table}.${d.column} is NOT NULL. Drop the NOT NULL or choose another policy.`,
      );
    }
    for (const target of Object.values(d.snapshotColumns)) {
      if (!columns.has(target)) {
        throw new InvalidInputError(
          `reference ${this.name}: snapshot column "${target}" does not exist in ${d.table}. Add it before installing.`,
        );
      }
    }
  }

  /** Foreign key to the replica (NOT VALID for rows that predate it), check trigger, registry row. Idempotent. */
  async install(db: Database): Promise<void> {
    const d = this.def;
    const table = tableSql(d.table);
    const column = quoteIdent(d.column);
    const names = referenceObjectNames(d);
    const fn = `${this.schemaSql}.${quoteIdent(names.function)}`;
    await db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [
        `baton:reference:${this.name}`,
      ]);
      await tx.query(
        `INSERT INTO ${this.schemaSql}.entity_references (name, table_name, column_name, entity, on_delete, snapshot_columns)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO UPDATE SET entity = excluded.entity, on_delete = excluded.on_delete,
           snapshot_columns = excluded.snapshot_columns`,
        [this.name, d.table, d.column, d.entity, d.onDelete, d.snapshotColumns],
      );
      const exists = await tx.query(
        `SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2`,
        [table, names.constraint],
      );
      if (exists.rows.length === 0) {
        await tx.query(
          `ALTER TABLE ${table} ADD CONSTRAINT ${quoteIdent(names.constraint)} FOREIGN KEY (${column}) REFERENCES ${this.replica.tableSql} (id) NOT VALID`,
        );
      }
      // The names reach the function as trigger arguments (TG_ARGV), never as
      // SQL or format text: a quote, a percent sign or a dollar in a name is data.
      const body = `
        DECLARE v_state text;
        BEGIN
          IF NEW.${column} IS NULL THEN RETURN NEW; END IF;
          IF TG_OP = 'UPDATE' AND OLD.${column} IS NOT DISTINCT FROM NEW.${column} THEN RETURN NEW; END IF;
          SELECT state INTO v_state FROM ${this.replica.tableSql} WHERE id = NEW.${column} FOR SHARE;
          IF v_state IS NULL OR v_state NOT IN ('ACTIVE', 'UNVERIFIED') THEN
            RAISE EXCEPTION '%.% refers to % %, which is %', TG_ARGV[0], TG_ARGV[1], TG_ARGV[2],
                NEW.${column}, coalesce(lower(v_state), 'unknown')
              USING ERRCODE = '${REFERENCE_VIOLATION_SQLSTATE}',
                    DETAIL = json_build_object('table', TG_ARGV[0], 'column', TG_ARGV[1],
                      'entity', TG_ARGV[2], 'id', NEW.${column}::text,
                      'state', coalesce(lower(v_state), 'unknown'))::text;
          END IF;
          RETURN NEW;
        END`;
      await tx.query(
        `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS ${dollarQuote(body)}`,
      );
      await tx.query(
        `CREATE OR REPLACE TRIGGER ${quoteIdent(names.trigger)}
         BEFORE INSERT OR UPDATE OF ${column} ON ${table}
         FOR EACH ROW EXECUTE FUNCTION ${fn}(${[d.table, d.column, d.entity].map(quoteLiteral).join(', ')})`,
      );
    });
  }

  /**
   * Checks, inside the caller's transaction, that `id` may be referenced now,
   * and keeps it so until commit (share lock on the replica row). An id the
   * replica has never seen is looked up from its owner; if the owner cannot
   * be reached the write is refused, or accepted as UNVERIFIED and verified
   * later by the caretaker (`onOwnerUnreachable: 'accept'`).
   *
   * @throws ReferenceViolation naming table, column, entity and id.
   */
  check(tx: Executor, id: string | number): Promise<void> {
    return inSpan(
      `reference check ${this.def.entity}`,
      {
        attributes: {
          'baton.reference.table': this.def.table,
          'baton.reference.column': this.def.column,
          'baton.entity': this.def.entity,
        },
      },
      () => this.checkNow(tx, id),
    );
  }

  private async checkNow(tx: Executor, id: string | number): Promise<void> {
    const key = String(id);
    const d = this.def;
    if (key.length === 0 || key.length > 512 || key.includes('\u0000')) {
      throw new ReferenceViolation(
        d.table,
        d.column,
        d.entity,
        key.slice(0, 100),
        'not a valid id',
        'ids are 1–512 characters without NUL',
      );
    }
    let row = await this.share(tx, key);
    if (!row) {
      let found: Awaited<ReturnType<OwnerClient['lookup']>>;
      try {
        found = await this.owner.lookup(d.entity, key);
      } catch (error) {
        // Only an owner that could not be reached may be trusted later; a
        // definite answer (404: it owns no such entity, 400: bad id) is a refusal.
        const unreachable = (error as { retryable?: boolean }).retryable !== false;
        if (d.onOwnerUnreachable === 'refuse' || !unreachable) {
          throw new ReferenceViolation(
            d.table,
            d.column,
            d.entity,
            key,
            'unknown here',
            `${unreachable ? 'its owner could not be asked' : 'its owner refused the lookup'}: ${(error as Error).message}`,
          );
        }
        await this.replica.put(tx, {
          id: key,
          state: 'UNVERIFIED',
          version: 0,
          fields: {},
          personal: [],
        });
        return;
      }
      if (found.state === 'absent')
        throw new ReferenceViolation(d.table, d.column, d.entity, key, 'unknown to its owner');
      await this.replica.put(tx, {
        id: key,
        state: replicaStateOf(found.state),
        version: found.version,
        fields: found.fields,
        personal: found.personal,
      });
      row = await this.share(tx, key);
    }
    if (!row || !REFERENCEABLE.has(row.state)) {
      throw new ReferenceViolation(
        d.table,
        d.column,
        d.entity,
        key,
        (row?.state ?? 'unknown').toLowerCase(),
      );
    }
  }

  /**
   * The replica row under a share lock. For key types an id may fail to cast
   * to (integer, uuid, …) the read runs in a savepoint, so that a malformed id
   * is a ReferenceViolation that leaves the caller's transaction usable —
   * like every other violation — instead of aborting it. Text keys skip it.
   */
  private async share(tx: Executor, id: string) {
    const guarded = !castCannotFail(this.replica.idType, id);
    if (guarded) await tx.query('SAVEPOINT baton_reference_check');
    try {
      const row = await this.replica.share(tx, id);
      if (guarded) await tx.query('RELEASE SAVEPOINT baton_reference_check');
      return row;
    } catch (error) {
      if (guarded) await tx.query('ROLLBACK TO SAVEPOINT baton_reference_check');
      if ((error as { code?: string }).code?.startsWith('22')) {
        throw new ReferenceViolation(
          this.def.table,
          this.def.column,
          this.def.entity,
          id,
          'not a valid id',
          (error as Error).message,
        );
      }
      throw error;
    }
  }
}

const INTEGER_RANGES: Record<string, [bigint, bigint]> = {
  smallint: [-(2n ** 15n), 2n ** 15n - 1n],
  integer: [-(2n ** 31n), 2n ** 31n - 1n],
  bigint: [-(2n ** 63n), 2n ** 63n - 1n],
};
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Whether `id` certainly casts to the key type: text always does; an
 * integer in range and a canonical UUID do. Only then can the replica read
 * skip its savepoint (two round trips on every check of an integer or UUID key).
 */
function castCannotFail(idType: string, id: string): boolean {
  if (idType === 'text' || idType === 'character varying') return true;
  if (idType === 'uuid') return CANONICAL_UUID.test(id);
  const range = INTEGER_RANGES[idType];
  if (!range || !/^-?\d{1,19}$/.test(id)) return false;
  const n = BigInt(id);
  return n >= range[0] && n <= range[1];
}

/** Turns the check trigger's error into a `ReferenceViolation` (other errors pass through unchanged). */
export function asReferenceViolation(error: unknown): unknown {
  const e = error as { code?: string; detail?: string };
  if (e?.code !== REFERENCE_VIOLATION_SQLSTATE || typeof e.detail !== 'string') return error;
  try {
    const d = JSON.parse(e.detail) as Record<string, string>;
    return new ReferenceViolation(
      d.table ?? '',
      d.column ?? '',
      d.entity ?? '',
      d.id ?? '',
      d.state ?? '',
    );
  } catch {
    return error;
  }
}
