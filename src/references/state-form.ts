import { quoteIdent, quoteLiteral } from '../db/sql.ts';

/**
 * The form an owner's column takes in its entity's state events — the
 * `fields` a replica copies — for every type PostgreSQL can store, chosen so
 * that every value travels exactly and passes every consumer's JSON checks
 * (no integer past 2^53, no `__proto__` key, no deep nesting, no number
 * JavaScript cannot read):
 *
 * | column type                                          | in the event                       |
 * |------------------------------------------------------|------------------------------------|
 * | text, varchar, char, name, citext, uuid, enums       | JSON string (char keeps its padding)|
 * | boolean                                              | true / false                       |
 * | smallint, integer                                    | JSON number                        |
 * | real, double precision                               | JSON number (shortest exact) inside ±2^53; beyond it, NaN and ±Infinity a string |
 * | date, time, timestamp, timestamptz (in UTC), timetz  | ISO 8601 string                    |
 * | bigint, numeric, money                               | exact decimal string ("12.50")     |
 * | json, jsonb                                          | string holding the JSON text       |
 * | arrays of text-like, boolean, smallint, integer types| JSON array                         |
 * | anything else (intervals, bytea, ranges, composites, arrays of other types, …) | string: PostgreSQL's text form |
 *
 * Domains take the form of their base type. A text form is what the type's
 * output function prints — and that depends on session settings (TimeZone,
 * DateStyle, IntervalStyle, extra_float_digits, bytea_output, …). Baton
 * pins them (`PINNED_SETTINGS`) wherever it computes a form, so a value's
 * form is the same whatever session wrote it.
 */
export type StateForm =
  /** A JSON value from `to_jsonb` (strings, numbers, booleans, arrays of those). */
  | 'json'
  /** A JSON string of `::text` (exact decimals, JSON text, other types' text form). */
  | 'text';

/** What `install()` reads about each copied column. */
export interface ColumnType {
  name: string;
  /** `format_type` of the column, e.g. `numeric(10,2)` (for messages). */
  type: string;
  /** The base type's name after resolving domains, e.g. `numeric`, `_int4` for an array. */
  baseType: string;
  /** For arrays: the element's base type name; otherwise null. */
  elementType: string | null;
  /** pg_type.typtype of the base type: `e` enum, `c` composite, `r` range, … */
  typtype: string;
}

/**
 * Settings every form is computed under (function `SET` clauses, or
 * `SET LOCAL` at the start of a transaction); values are SQL as written.
 */
export const PINNED_SETTINGS: readonly (readonly [string, string])[] = [
  ['search_path', 'pg_catalog, pg_temp'],
  ['timezone', "'UTC'"],
  ['datestyle', "'ISO, YMD'"],
  ['intervalstyle', 'postgres'],
  ['extra_float_digits', '3'],
  ['bytea_output', 'hex'],
];

/** The pinned settings as `SET` clauses of a function definition. */
export function pinnedSetClauses(): string {
  return PINNED_SETTINGS.map(([name, value]) => `SET ${name} = ${value}`).join(' ');
}

/** The pinned settings as statements for the start of a transaction. */
export function pinnedSetLocal(): string {
  return PINNED_SETTINGS.map(([name, value]) => `SET LOCAL ${name} = ${value}`).join('; ');
}

const FLOAT = new Set(['float4', 'float8']);
/** 2^53: the first integer JavaScript cannot tell from its neighbour. */
const SAFE_LIMIT = '9007199254740992';

/** Types whose text form is their JSON string as it is (no padding, no settings). */
const PLAIN_TEXT = new Set(['text', 'varchar', 'name', 'citext', 'uuid']);
/** Types `to_jsonb` writes as JSON values that every consumer reads exactly. */
const NATIVE = new Set(['bool', 'int2', 'int4', 'float4', 'float8', 'bpchar']);
/** ISO 8601 strings from `to_jsonb` (XSD format: independent of DateStyle; UTC pinned). */
const DATETIME = new Set(['date', 'time', 'timetz', 'timestamp', 'timestamptz']);
/** Array elements `to_jsonb` writes as JSON values every consumer reads exactly. */
const NATIVE_ELEMENT = new Set([
  'text',
  'varchar',
  'name',
  'citext',
  'uuid',
  'bool',
  'int2',
  'int4',
]);

export function stateFormOf(column: ColumnType): StateForm {
  const base = column.baseType;
  if (column.elementType !== null) {
    return NATIVE_ELEMENT.has(column.elementType) ? 'json' : 'text';
  }
  if (column.typtype === 'e' || PLAIN_TEXT.has(base) || NATIVE.has(base) || DATETIME.has(base))
    return 'json';
  return 'text';
}

/** SQL of a column's state form: a text value (a JSON string in the event) or a jsonb value. */
function stateValue(column: ColumnType, alias: string): { sql: string; jsonb: boolean } {
  const value = `${alias}.${quoteIdent(column.name)}`;
  if (column.baseType === 'money') return { sql: `(${value})::numeric::text`, jsonb: false };
  if (FLOAT.has(column.baseType)) {
    // Past 2^53 JavaScript reads a number as an integer it cannot hold exactly, which every
    // consumer refuses; NaN and the infinities are no JSON numbers: those go as strings.
    return {
      sql: `CASE WHEN abs(${value}) < ${SAFE_LIMIT} THEN to_jsonb(${value}) ELSE to_jsonb((${value})::text) END`,
      jsonb: true,
    };
  }
  // Text forms, and plain text types (their JSON string is their text), go in as text.
  if (stateFormOf(column) === 'text' || PLAIN_TEXT.has(column.baseType) || column.typtype === 'e') {
    return { sql: `(${value})::text`, jsonb: false };
  }
  return { sql: `to_jsonb(${value})`, jsonb: true };
}

/** SQL: the column's value in its state form (a value for `jsonb_build_object`), of row `alias`. */
export function stateValueSql(column: ColumnType, alias: string): string {
  return stateValue(column, alias).sql;
}

/** SQL: the column's state form as a jsonb value, of row `alias`. */
export function stateJsonbSql(column: ColumnType, alias: string): string {
  const { sql, jsonb } = stateValue(column, alias);
  return jsonb ? sql : `to_jsonb(${sql})`;
}

/** SQL: the row's copied fields as one jsonb object, in their state form. */
export function stateFieldsSql(columns: readonly ColumnType[], alias: string): string {
  if (columns.length === 0) return `'{}'::jsonb`;
  const pairs = columns.map((c) => `${quoteLiteral(c.name)}, ${stateValueSql(c, alias)}`);
  return `jsonb_build_object(${pairs.join(', ')})`;
}

/**
 * SQL: the caretaker's value form (see `member_text` in the migrations) of
 * one column's state form, computed straight from the typed column — no
 * jsonb built per row on the common paths. Must run under the pinned
 * settings. Equal to `member_text(value)` of the value a replica holds.
 */
export function memberTextSql(column: ColumnType, alias: string, schemaSql: string): string {
  const value = `${alias}.${quoteIdent(column.name)}`;
  const stringForm = (text: string) => `'s' || length(${text}) || ':' || ${text}`;
  const base = column.baseType;
  let form: string;
  if (column.elementType !== null || DATETIME.has(base) || base === 'bpchar') {
    // Arrays, dates and padded chars: the event's own form.
    return `coalesce(${schemaSql}.member_text(${stateJsonbSql(column, alias)}), '~')`;
  }
  if (base === 'money') form = stringForm(`(${value})::numeric::text`);
  else if (PLAIN_TEXT.has(base) || column.typtype === 'e' || stateFormOf(column) === 'text')
    form = stringForm(`(${value})::text`);
  else if (base === 'bool') form = `'b' || (${value})::text`;
  else if (base === 'int2' || base === 'int4')
    form = `'n' || hashfloat8extended((${value})::float8, 0)`;
  else if (FLOAT.has(base)) {
    // The event holds the shortest decimal that reads back as the value; JavaScript reads it
    // as the double nearest that decimal (for real: not the float4's own bits).
    const asDouble = base === 'float4' ? `((${value})::text)::float8` : `(${value})::float8`;
    form = `CASE WHEN abs(${value}) < ${SAFE_LIMIT} THEN 'n' || hashfloat8extended(${asDouble}, 0)
      ELSE ${stringForm(`(${value})::text`)} END`;
  } else {
    return `coalesce(${schemaSql}.member_text(${stateJsonbSql(column, alias)}), '~')`;
  }
  return `coalesce(${form}, '~')`;
}

/**
 * SQL (bigint): the hash of a row's fields, equal to `fields_hash(fields)` of
 * the replica's copy: `<key length>:<key><value form>` for each key in
 * jsonb's key order, hashed.
 */
export function fieldsHashSql(
  columns: readonly ColumnType[],
  alias: string,
  schemaSql: string,
): string {
  const parts = inJsonbKeyOrder(columns).map(
    (c) => `'${lengthPrefixed(c.name)}' || ${memberTextSql(c, alias, schemaSql)}`,
  );
  return `hashtextextended(${parts.length ? parts.join(' || ') : "''"}, 2)`;
}

/** jsonb stores (and `jsonb_each` returns) object keys shorter first, then bytewise. */
export function inJsonbKeyOrder<T extends { name: string }>(columns: readonly T[]): T[] {
  return [...columns].sort((a, b) => {
    const x = Buffer.from(a.name);
    const y = Buffer.from(b.name);
    return x.length - y.length || Buffer.compare(x, y);
  });
}

function lengthPrefixed(key: string): string {
  return `${[...key].length}:${key}`.replaceAll("'", "''");
}

/** Reads the copied columns' types (domains resolved to their base) of `table`. */
export const COLUMN_TYPES_SQL = `
  WITH RECURSIVE cols AS (
    SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type, a.atttypid AS typ, 0 AS depth
    FROM pg_attribute a
    WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
  ), resolved AS (
    SELECT name, type, typ, depth FROM cols
    UNION ALL
    SELECT r.name, r.type, t.typbasetype, r.depth + 1
    FROM resolved r JOIN pg_type t ON t.oid = r.typ
    WHERE t.typtype = 'd' AND r.depth < 20
  )
  SELECT r.name, r.type, t.typname::text AS "baseType", t.typtype::text AS typtype,
    (SELECT coalesce(eb.typname, e.typname)::text FROM pg_type e
       LEFT JOIN pg_type eb ON e.typtype = 'd' AND eb.oid = e.typbasetype
     WHERE e.oid = t.typelem AND t.typcategory = 'A') AS "elementType"
  FROM resolved r JOIN pg_type t ON t.oid = r.typ
  WHERE t.typtype <> 'd'`;
