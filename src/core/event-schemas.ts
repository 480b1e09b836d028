import type { StandardSchemaV1 } from '@standard-schema/spec';
import { SchemaViolationError } from './errors.ts';

/** Event type → Standard Schema (zod, valibot, arktype, …). */
export type EventSchemas = Readonly<Record<string, StandardSchemaV1>>;

/**
 * Validates `payload` against the schema registered for `type`, if any, and
 * returns the schema's output (which may be a transformed value). Throws
 * `SchemaViolationError` listing the issues.
 */
export async function validatePayload(
  schemas: EventSchemas | undefined,
  type: string,
  payload: unknown,
): Promise<unknown> {
  const schema = schemas?.[type];
  if (!schema) return payload;
  let result = schema['~standard'].validate(payload);
  if (result instanceof Promise) result = await result;
  if (result.issues) throw new SchemaViolationError(type, result.issues);
  return result.value;
}
