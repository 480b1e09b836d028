import pg from 'pg';
import { InvalidInputError } from '../core/errors.ts';
import type { Executor } from './executor.ts';

/**
 * The node-postgres client under an executor Baton handed you (`tx` in a
 * saga step, a consumer's handler, a participant's try/confirm/cancel or
 * action, `db.transaction`) — to bind your ORM to Baton's transaction:
 * `drizzle({ client: pgClient(tx) })`, `knex('t').insert(row).connection(pgClient(tx))`.
 * Do not release it, commit or roll back on it: Baton does.
 */
export function pgClient(tx: Executor): pg.PoolClient {
  if (!(tx instanceof pg.Client))
    throw new InvalidInputError(
      "pgClient(tx): this executor is not a node-postgres client (Baton's PgDatabase hands one to every transaction; an executor from another adapter has none)",
    );
  return tx as pg.PoolClient;
}
