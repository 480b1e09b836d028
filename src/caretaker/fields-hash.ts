import { quoteIdent } from '../db/sql.ts';

/**
 * The hash of an owner row's copied fields, as SQL over its typed columns,
 * equal to `fields_hash(fields)` (sql/migrations/000006_fields_hash.sql) of
 * the same fields as a replica holds them — after a trip through the
 * entity's state event, JSON and JavaScript. The common types take a short
 * path straight from the column (no jsonb is built per row); every other type
 * goes through `to_jsonb`, as the state event does.
 */
export interface FieldColumn {
  name: string;
  /** `format_type` of the column, e.g. `text`, `character varying(80)`, `numeric(10,2)`. */
  type: string;
  /** pg_type.typtype: `e` for enums. */
  typtype?: string;
}

export function ownerFieldsHashSql(
  columns: readonly FieldColumn[],
  schemaSql: string,
  alias = 't',
): string {
  const parts = inJsonbKeyOrder(columns).map(
    (c) =>
      `'${lengthPrefixed(c.name)}' || ${valueFormSql(`${alias}.${quoteIdent(c.name)}`, c, schemaSql)}`,
  );
  return `hashtextextended(${parts.length ? parts.join(' || ') : "''"}, 2)`;
}

/** The value form of one column (see the migration): NULL is `~`. */
export function valueFormSql(column: string, c: FieldColumn, schemaSql: string): string {
  const base = c.type.replace(/\(.*\)$/, '').replace(/\[\]$/, '[]');
  let form: string;
  if (c.typtype === 'e' || TEXT_LIKE.has(base)) {
    form = `'s' || length(${column}::text) || ':' || ${column}::text`;
  } else if (INTEGER.has(base)) {
    // JSON.parse reads the number as the nearest double; so does PostgreSQL's cast.
    form = `'n' || hashfloat8extended(${column}::float8, 0)`;
  } else if (base === 'numeric' || base === 'double precision') {
    // The same, inside a double's normal range; at its edges (and for NaN and
    // the infinities) the event's own form decides, as member_text reads it.
    return `CASE WHEN ${column} = 0 OR abs(${column}) BETWEEN 1e-300 AND 1e300
      THEN 'n' || hashfloat8extended(${column}::float8, 0)
      WHEN ${column} IS NULL THEN '~' ELSE ${schemaSql}.member_text(to_jsonb(${column})) END`;
  } else if (base === 'boolean') {
    form = `'b' || ${column}::text`;
  } else {
    // to_jsonb of NULL is NULL (the event holds a JSON null): '~' either way.
    return `coalesce(${schemaSql}.member_text(to_jsonb(${column})), '~')`;
  }
  return `coalesce(${form}, '~')`;
}

/** Text types whose state-event form is a JSON string of exactly `::text`. */
const TEXT_LIKE = new Set(['text', 'character varying', 'uuid', 'name', 'citext']);
/**
 * Integers: their state-event form is their exact decimal, so its double is
 * the column's own cast to float8. (`real` is not on the short path: its
 * JSON form is float4's shortest decimal, whose double differs from the
 * cast; it goes through `to_jsonb` like the event.)
 */
const INTEGER = new Set(['smallint', 'integer', 'bigint']);

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
