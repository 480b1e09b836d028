import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Executor, QueryResult } from '../../src/db/executor.ts';

/**
 * An `Executor` that runs every statement as a named prepared statement on
 * this connection (node-postgres prepares it once, then only binds and
 * executes). Used to measure how much of publish's cost is parsing and
 * planning its statement on every call — Baton itself sends unnamed ones.
 */
export function preparedExecutor(client: pg.Client): Executor {
  return {
    query<R = Record<string, unknown>>(text: string, values?: unknown[]) {
      const name = `bench_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
      return client.query({ name, text, values }) as unknown as Promise<QueryResult<R>>;
    },
  };
}
