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
