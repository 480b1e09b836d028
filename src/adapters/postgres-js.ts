import type { Executor, QueryResult } from '../db/executor.ts';

/**
 * `baton/postgres-js`: a postgres.js transaction (or `sql`) as the executor
 * Baton writes with — `publish`, `check` and `sagas.start` then join it:
 *
 *   await sql.begin(async (tx) => {
 *     await tx`INSERT INTO orders …`;
 *     await baton.publish(fromPostgresJs(tx), { type: 'order.placed', key, payload });
 *   });
 */
export interface PostgresJsLike {
  unsafe(
    query: string,
    parameters?: never[],
  ): PromiseLike<readonly Record<string, unknown>[] & { count?: number | null }>;
}

export function fromPostgresJs(sql: PostgresJsLike): Executor {
  return {
    async query<R>(text: string, values: unknown[] = []): Promise<QueryResult<R>> {
      const rows = await sql.unsafe(text, values as never[]);
      return { rows: [...rows] as R[], rowCount: rows.count ?? rows.length };
    },
  };
}
