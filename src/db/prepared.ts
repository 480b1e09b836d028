import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Executor, QueryResult } from './executor.ts';

/**
 * Baton's hot statements (publish, relay, feed, inbox, sagas, the barrier)
 * run as named prepared statements where the connection allows it:
 * PostgreSQL parses and plans them once per connection instead of on every
 * call. For publish's statement that is most of its cost (measured: a
 * business transaction with an unprepared publish ran at 1,734 tx/s, with
 * the same statement prepared at 3,267 tx/s; 8 clients, same run).
 *
 * Only Baton's own statements go this way: their texts are fixed when a
 * component is built, so a connection holds a bounded set of them. A
 * caller's statements — in a handler, a saga step — are never prepared
 * behind their back.
 *
 * Where a connection cannot keep prepared statements (PgBouncer in
 * transaction mode before 1.21, or without `max_prepared_statements`),
 * build the `PgDatabase` with `preparedStatements: false`, and pass your own
 * clients through `withoutPreparedStatements(client)`.
 */

/** An executor that can run a statement by name (`PgDatabase` does). */
export interface PreparingExecutor extends Executor {
  queryPrepared<R = Record<string, unknown>>(
    name: string,
    text: string,
    values: unknown[],
  ): Promise<QueryResult<R>>;
}

const plainOnly = new WeakSet<object>();
const names = new Map<string, string>();

/** Marks a node-postgres client so Baton never prepares a statement on it. Returns it. */
export function withoutPreparedStatements<C extends object>(client: C): C {
  plainOnly.add(client);
  return client;
}

/** The statement's name: the same text always gets the same name, so no two texts can clash. */
export function statementName(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `baton_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    names.set(text, name);
  }
  return name;
}

/**
 * Runs one of Baton's own statements: prepared on connections that allow
 * it, as a plain parameterised statement on any other executor (an adapter
 * for another client library). The result is the same either way.
 */
export function queryPrepared<R = Record<string, unknown>>(
  executor: Executor,
  text: string,
  values: unknown[],
): Promise<QueryResult<R>> {
  if (isPreparing(executor)) return executor.queryPrepared<R>(statementName(text), text, values);
  if (executor instanceof pg.Client && !plainOnly.has(executor)) {
    return executor.query({ name: statementName(text), text, values }) as unknown as Promise<
      QueryResult<R>
    >;
  }
  return executor.query<R>(text, values);
}

function isPreparing(executor: Executor): executor is PreparingExecutor {
  return typeof (executor as Partial<PreparingExecutor>).queryPrepared === 'function';
}
