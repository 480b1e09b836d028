import { InvalidInputError } from '../core/errors.ts';
import type { Executor } from '../db/executor.ts';
import { derivedName, dollarQuote, quoteIdent, quoteLiteral } from '../db/sql.ts';
import { type EntityDefinition, tableSql } from './definitions.ts';
import {
  COLUMN_TYPES_SQL,
  type ColumnType,
  pinnedSetClauses,
  stateFieldsSql,
} from './state-form.ts';

/** An entity as its capture needs it: the declaration and the types read from the table. */
export interface CapturedEntity {
  def: Required<EntityDefinition>;
  /** Quoted schema of Baton's tables. */
  schemaSql: string;
  /** The entity's table, schema-qualified and quoted (Baton's functions pin search_path). */
  table: string;
  key: ColumnType;
  fields: ColumnType[];
}

/** What install reads about an entity's table: its qualified name and its columns' types. */
export interface EntityColumns {
  table: string;
  key: ColumnType;
  fields: ColumnType[];
}

/**
 * The versions of an entity's ids — the version of each id's latest state
 * event — in a table keyed by the entity's own key type, so that lookups and
 * the caretaker's scans join it to the owner's table on its key.
 */
export function versionsTableSql(schemaSql: string, entity: string): string {
  return `${schemaSql}.${quoteIdent(`versions_${entity}`)}`;
}

/**
 * Reads the table's qualified name (as the caller's search_path finds it)
 * and the key's and copied fields' types; refuses columns it does not have.
 */
export async function readColumnTypes(
  tx: Executor,
  def: Required<EntityDefinition>,
): Promise<EntityColumns> {
  const qualified = await tx.query<{ name: string }>(
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`,
    [tableSql(def.table)],
  );
  const r = await tx.query<ColumnType>(COLUMN_TYPES_SQL, [tableSql(def.table)]);
  const table = qualified.rows[0]?.name;
  if (table === undefined || r.rows.length === 0) {
    throw new InvalidInputError(
      `entity ${def.name}: table "${def.table}" does not exist. Create it before installing the entity.`,
    );
  }
  const byName = new Map(r.rows.map((c) => [c.name, c]));
  const column = (name: string) => {
    const found = byName.get(name);
    if (!found)
      throw new InvalidInputError(
        `entity ${def.name}: table "${def.table}" has no column "${name}".`,
      );
    return found;
  };
  return { table, key: column(def.key), fields: def.fields.map(column) };
}

/**
 * Installs the entity's capture: its versions table (filled from what an
 * earlier version of Baton recorded, the first time) and a row trigger whose
 * function is written for this entity's columns, so that every insert,
 * update and delete — also plain SQL — emits the entity's state in the same
 * transaction, each column in its state form, under pinned settings. Runs
 * inside the caller's transaction (install holds the entity's install lock).
 */
export async function installCapture(tx: Executor, entity: CapturedEntity): Promise<void> {
  const { def, schemaSql: s, key } = entity;
  const versions = versionsTableSql(s, def.name);
  const existing = await tx.query<{ type: string }>(
    `SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute
     WHERE attrelid = to_regclass($1) AND attname = 'id' AND NOT attisdropped`,
    [versions],
  );
  const known = existing.rows[0]?.type;
  if (known === undefined) {
    await tx.query(
      `CREATE TABLE ${versions} (
         id ${key.type} PRIMARY KEY,
         version bigint NOT NULL CHECK (version > 0),
         seal bigint)`,
    );
    await adoptEarlierVersions(tx, entity);
  } else if (known !== key.type) {
    throw new InvalidInputError(
      `entity ${def.name}: its key ${def.key} is ${key.type} now, but Baton recorded its versions as ${known}. ` +
        `Changing an entity's key type is not supported; declare a new entity instead.`,
    );
  }
  await tx.query(captureFunctionSql(entity));
  await tx.query(lookupFunctionSql(entity));
  await tx.query(
    `CREATE OR REPLACE TRIGGER ${quoteIdent(derivedName(`baton_capture_${def.name}`))}
     AFTER INSERT OR UPDATE OR DELETE ON ${entity.table}
     FOR EACH ROW EXECUTE FUNCTION ${captureFunction(s, def.name)}()`,
  );
  await tx.query(
    `CREATE OR REPLACE TRIGGER ${quoteIdent(derivedName(`baton_no_truncate_${def.name}`))}
     BEFORE TRUNCATE ON ${entity.table}
     FOR EACH STATEMENT EXECUTE FUNCTION ${s}.refuse_entity_truncate('${def.name}')`,
  );
}

/** The entity's lookup function: `(fields, version, deleting)` of a live id, in state form. */
export function lookupFunction(schemaSql: string, entity: string): string {
  return `${schemaSql}.${quoteIdent(`lookup_${entity}`)}`;
}

/**
 * A function (pinned settings, like the capture) returning a live id's
 * fields in their state form, its version and whether a coordinated delete
 * has fenced it; no row when the table has no such id. Lookups, the restrict
 * protocol and announcements read the owner through it, so they see every
 * value exactly as the state events carry it.
 */
export function lookupFunctionSql(entity: CapturedEntity): string {
  const { def, schemaSql: s, key } = entity;
  return `
    CREATE OR REPLACE FUNCTION ${lookupFunction(s, def.name)}(p_id text)
    RETURNS TABLE (fields jsonb, version bigint, deleting boolean)
    LANGUAGE sql STABLE ${pinnedSetClauses()} AS ${dollarQuote(`
      SELECT ${stateFieldsSql(entity.fields, 't')}, v.version,
             EXISTS (SELECT 1 FROM ${s}.delete_fences f
                     WHERE f.entity = ${quoteLiteral(def.name)} AND f.id = p_id AND f.state = 'pending')
      FROM ${entity.table} t
      LEFT JOIN ${versionsTableSql(s, def.name)} v ON v.id = t.${quoteIdent(def.key)}
      WHERE t.${quoteIdent(def.key)} = p_id::${key.type}
    `)}`;
}

function captureFunction(schemaSql: string, entity: string): string {
  return `${schemaSql}.${quoteIdent(`capture_${entity}`)}`;
}

/**
 * The entity's capture function. A key change is the delete of the old id
 * and the insert of the new one; an update that changes no copied field
 * emits nothing. Every event counts on its key's version counter (shared
 * with `publish` under the same key), so the events of a key go out in the
 * order their transactions commit, whoever wrote them.
 */
export function captureFunctionSql(entity: CapturedEntity): string {
  const { def, schemaSql: s } = entity;
  const name = quoteLiteral(def.name);
  const key = quoteIdent(def.key);
  const versions = versionsTableSql(s, def.name);
  const personal = `ARRAY[${def.personal.map(quoteLiteral).join(', ')}]::text[]`;
  const restrict =
    def.restrictReferrers.length > 0
      ? `PERFORM ${s}.refuse_unfenced_delete(${name}, v_old_id);`
      : '';
  return `
    CREATE OR REPLACE FUNCTION ${captureFunction(s, def.name)}() RETURNS trigger
    LANGUAGE plpgsql ${pinnedSetClauses()} AS ${dollarQuote(`
    DECLARE
      v_old_id text;
      v_new_id text;
      v_old jsonb;
      v_new jsonb;
      v_state text;
      v_version bigint;
    BEGIN
      IF TG_OP <> 'INSERT' THEN
        v_old_id := (OLD.${key})::text;
        v_old := ${stateFieldsSql(entity.fields, 'OLD')};
      END IF;
      IF TG_OP <> 'DELETE' THEN
        v_new_id := (NEW.${key})::text;
        v_new := ${stateFieldsSql(entity.fields, 'NEW')};
        IF TG_OP = 'UPDATE' AND v_new_id = v_old_id AND v_new IS NOT DISTINCT FROM v_old THEN
          RETURN NULL; -- nothing others copy has changed
        END IF;
      END IF;
      IF TG_OP = 'DELETE' OR v_new_id <> v_old_id THEN
        ${restrict}
        v_version := ${s}.emit_entity_event(${name}, v_old_id, 'deleted', v_old, ${personal});
        INSERT INTO ${s}.tombstones (entity, id, version, fields) VALUES (${name}, v_old_id, v_version, v_old)
        ON CONFLICT (entity, id) DO UPDATE SET version = excluded.version, fields = excluded.fields, deleted_at = now();
        INSERT INTO ${versions} (id, version, seal)
        VALUES (OLD.${key}, v_version, ${s}.entity_version_seal(${name}, v_old_id, v_version))
        ON CONFLICT (id) DO UPDATE SET version = excluded.version, seal = excluded.seal;
        IF TG_OP = 'DELETE' THEN RETURN NULL; END IF;
      END IF;
      DELETE FROM ${s}.tombstones WHERE entity = ${name} AND id = v_new_id;
      v_state := CASE WHEN EXISTS (SELECT 1 FROM ${s}.delete_fences f
                                   WHERE f.entity = ${name} AND f.id = v_new_id AND f.state = 'pending')
                 THEN 'deleting' ELSE 'active' END;
      v_version := ${s}.emit_entity_event(${name}, v_new_id, v_state, v_new, ${personal});
      INSERT INTO ${versions} (id, version, seal)
      VALUES (NEW.${key}, v_version, ${s}.entity_version_seal(${name}, v_new_id, v_version))
      ON CONFLICT (id) DO UPDATE SET version = excluded.version, seal = excluded.seal;
      RETURN NULL;
    END`)}`;
}

/**
 * The first install after an upgrade: versions counted by an earlier Baton
 * (on `baton.entity:<entity>:<id>` keys) move to the versions table, and
 * each key's counter continues above the higher of its two old counters —
 * so no replica ever sees a version go back.
 */
async function adoptEarlierVersions(tx: Executor, entity: CapturedEntity): Promise<void> {
  const { def, schemaSql: s, key, table } = entity;
  const versions = versionsTableSql(s, def.name);
  const keyColumn = quoteIdent(def.key);
  const oldPrefix = `baton.entity:${def.name}:`;
  await tx.query(
    `INSERT INTO ${versions} (id, version, seal)
     SELECT t.${keyColumn}, v.version, ${s}.entity_version_seal($2, (t.${keyColumn})::text, v.version)
     FROM ${table} t
     JOIN ${s}.stream_versions v ON v.stream_key = $1 || (t.${keyColumn})::text
     ON CONFLICT (id) DO NOTHING`,
    [oldPrefix, def.name],
  );
  await tx.query(
    `INSERT INTO ${versions} (id, version, seal)
     SELECT (tb.id)::${key.type}, tb.version, ${s}.entity_version_seal($1, tb.id, tb.version)
     FROM ${s}.tombstones tb WHERE tb.entity = $1
     ON CONFLICT (id) DO NOTHING`,
    [def.name],
  );
  await tx.query(
    `INSERT INTO ${s}.stream_versions AS sv (stream_key, version, seal)
     SELECT $1 || (id)::text, version, ${s}.counter_seal($1 || (id)::text, version) FROM ${versions}
     ON CONFLICT (stream_key) DO UPDATE SET version = greatest(sv.version, excluded.version),
       seal = ${s}.counter_seal(sv.stream_key, greatest(sv.version, excluded.version))`,
    [`${def.name}:`],
  );
  await tx.query(`DELETE FROM ${s}.stream_versions WHERE starts_with(stream_key, $1)`, [oldPrefix]);
}
