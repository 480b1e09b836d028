import { createHash } from 'node:crypto';
import { InvalidInputError } from '../core/errors.ts';

/** Quotes an SQL identifier. The only way identifiers reach SQL text in Baton. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Validates a schema name once at the edge; returns it quoted for use in SQL text. */
export function schemaIdent(name: string): string {
  if (!SCHEMA_NAME.test(name)) {
    throw new InvalidInputError(
      `schema name "${name}" is not allowed: use lower-case letters, digits and underscores (at most 63, not starting with a digit).`,
    );
  }
  return quoteIdent(name);
}

/**
 * An SQL string literal. With a backslash in the text it is written in the
 * escape form (`E'…'`, backslashes doubled) — as PostgreSQL's own
 * `quote_literal` does — so it reads the same whatever
 * `standard_conforming_strings` says.
 */
export function quoteLiteral(text: string): string {
  const quoted = text.replaceAll("'", "''");
  return text.includes('\\') ? `E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}

/** PostgreSQL keeps identifiers to 63 bytes (NAMEDATALEN − 1) and cuts longer ones silently. */
export const MAX_IDENTIFIER_BYTES = 63;

/**
 * A name Baton derives from user names (a trigger, a function, a
 * constraint): `base` itself when it fits in 63 bytes — so installations
 * keep the names they have — else its first bytes and a hash of the whole,
 * which stays unique where cutting would not.
 */
export function derivedName(base: string): string {
  if (Buffer.byteLength(base) <= MAX_IDENTIFIER_BYTES) return base;
  const hash = createHash('sha256').update(base).digest('hex').slice(0, 12);
  // By code points, not UTF-16 units: a cut through a surrogate pair would leave half a
  // character, which PostgreSQL's JSON refuses wherever the name is reported.
  const chars = Array.from(base).slice(0, 50);
  while (Buffer.byteLength(chars.join('')) > 50) chars.pop();
  return `${chars.join('')}_${hash}`;
}

/**
 * Wraps a PL/pgSQL body in dollar quotes whose tag the body does not
 * contain (names in the body are the user's, and may hold `$fn$`).
 */
export function dollarQuote(body: string): string {
  let tag = '$baton$';
  for (let n = 1; body.includes(tag); n++) tag = `$baton${n}$`;
  return `${tag}${body}${tag}`;
}

/** A table name as Baton takes it: optionally schema-qualified, each part exactly as in the catalog. */
export interface TableName {
  schema?: string;
  name: string;
}

/**
 * Parses `name`, `schema.name`, or SQL-quoted parts for names that contain a
 * dot or a double quote (`"my.schema"."Odd""Name"`). Unquoted parts are
 * taken exactly as written — `userProfile` is the table "userProfile", not
 * userprofile: Baton never folds case. Each part is 1–63 bytes, without NUL.
 * Throws a message that states the rule; `what` names the option.
 */
export function parseTableName(text: string, what: string): TableName {
  const parts: string[] = [];
  let i = 0;
  const fail = (why: string): never => {
    throw new InvalidInputError(
      `${what} ${JSON.stringify(text)} is not a table name: ${why}. Write name or schema.name, exactly as in the catalog (case kept); quote a part with double quotes only if it contains a dot or a double quote ("my.schema"."Odd""Name").`,
    );
  };
  if (typeof text !== 'string' || text.length === 0) fail('it is empty');
  while (i <= text.length) {
    let part = '';
    if (text[i] === '"') {
      for (i++; ; i++) {
        if (i >= text.length) fail('a quoted part is not closed');
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            part += '"';
            i++;
          } else break;
        } else part += text[i];
      }
      i++;
    } else {
      while (i < text.length && text[i] !== '.') {
        if (text[i] === '"') fail('a double quote inside an unquoted part');
        part += text[i++];
      }
    }
    checkIdentifier(part, what, fail);
    parts.push(part);
    if (i === text.length) break;
    if (text[i] !== '.') fail('a quoted part is followed by something other than a dot');
    i++;
  }
  if (parts.length > 2) fail('it has more than two parts');
  return parts.length === 2
    ? { schema: parts[0], name: parts[1] as string }
    : { name: parts[0] as string };
}

/** `"schema"."name"` (or `"name"`, found by search_path) for SQL text. */
export function tableNameSql(table: TableName): string {
  return table.schema === undefined
    ? quoteIdent(table.name)
    : `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
}

/** A column name: exactly as in the catalog, 1–63 bytes, no NUL. */
export function checkColumnName(name: unknown, what: string): string {
  checkIdentifier(name, what, (why) => {
    throw new InvalidInputError(
      `${what} ${JSON.stringify(name)} is not a column name: ${why}. Write it exactly as in the catalog (case kept, no quotes): 1–63 bytes, no NUL character.`,
    );
  });
  return name as string;
}

function checkIdentifier(name: unknown, _what: string, fail: (why: string) => never): void {
  if (typeof name !== 'string' || name.length === 0) fail('a part is empty');
  const text = name as string;
  if (text.includes('\u0000')) fail('it contains a NUL character');
  if (Buffer.byteLength(text) > MAX_IDENTIFIER_BYTES)
    fail(`a part is ${Buffer.byteLength(text)} bytes, PostgreSQL keeps at most 63`);
}
