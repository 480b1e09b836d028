import { InvalidInputError } from '../core/errors.ts';
import type { EventInput } from '../core/event.ts';
import type { Database, Executor } from '../db/executor.ts';

/**
 * A named check: SQL returning the rows that violate it, and a remedy. The
 * caretaker runs every invariant on each pass, e.g.
 *
 *   { name: 'balance-not-negative',
 *     sql: 'SELECT customer_id, balance FROM accounts WHERE balance < 0',
 *     remedy: { publish: (row) => ({ type: 'loyalty.balance-negative', key: String(row.customer_id), payload: row }) } }
 *
 * The SQL is the service's own, trusted code (never user input). It runs
 * read-only (in a READ ONLY transaction) with a row limit.
 */
export interface InvariantDefinition {
  name: string;
  sql: string;
  remedy?: InvariantRemedy;
}

export type InvariantRemedy =
  /** Publish one event per violating row (through the outbox, in one transaction with the check's findings). */
  | { publish: (row: Record<string, unknown>) => EventInput }
  /** Call a function with the violating rows, in a transaction. */
  | { call: (rows: Record<string, unknown>[], tx: Executor) => Promise<void> };

export interface InvariantReport {
  name: string;
  violations: number;
  examples: Record<string, unknown>[];
  remedied: number;
  error?: string;
}

const NAME = /^[a-z][a-z0-9_.-]{0,99}$/;

export function validateInvariant(def: InvariantDefinition): InvariantDefinition {
  if (!NAME.test(def?.name ?? '')) {
    throw new InvalidInputError(
      `invariant name ${JSON.stringify(def?.name)} must be lower-case letters, digits, '.', '_' or '-'.`,
    );
  }
  if (typeof def.sql !== 'string' || !/^\s*(select|with)\b/i.test(def.sql)) {
    throw new InvalidInputError(
      `invariant ${def.name}: sql must be a SELECT (or WITH … SELECT) returning the violating rows.`,
    );
  }
  return def;
}

export async function runInvariant(
  db: Database,
  def: InvariantDefinition,
  publish: (tx: Executor, events: EventInput[]) => Promise<unknown>,
  options: { remedy: boolean; examples: number; limit?: number },
): Promise<InvariantReport> {
  const report: InvariantReport = { name: def.name, violations: 0, examples: [], remedied: 0 };
  let rows: Record<string, unknown>[];
  try {
    rows = await db.transaction(async (tx) => {
      await tx.query('SET TRANSACTION READ ONLY');
      const r = await tx.query<Record<string, unknown>>(
        `SELECT * FROM (${def.sql}) AS violations LIMIT $1`,
        [options.limit ?? 10_000],
      );
      return r.rows;
    });
  } catch (error) {
    report.error = `the check failed: ${(error as Error).message}`;
    return report;
  }
  report.violations = rows.length;
  report.examples = rows.slice(0, options.examples);
  if (!options.remedy || rows.length === 0 || !def.remedy) return report;
  const remedy = def.remedy;
  await db.transaction(async (tx) => {
    if ('publish' in remedy)
      await publish(
        tx,
        rows.map((row) => remedy.publish(row)),
      );
    else await remedy.call(rows, tx);
  });
  report.remedied = rows.length;
  return report;
}
