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
  const unwrap = wrapped.get(tx);
  if (unwrap) return unwrap();
  if (!(tx instanceof pg.Client))
    throw new InvalidInputError(
      "pgClient(tx): this executor is not a node-postgres client (Baton's PgDatabase hands one to every transaction; an executor from another adapter has none)",
    );
  return tx as pg.PoolClient;
}

/** Executors that wrap another (a saga step's, closed when the step is over) → their client. */
const wrapped = new WeakMap<object, () => pg.PoolClient>();

/**
 * Lets `pgClient(wrapper)` see through a wrapper of `inner`: it hands out
 * `inner`'s client, whose statements fail once `isOpen()` is false — so an
 * ORM bound to a saga step's transaction is stopped with the step, as
 * Baton's own statements are.
 */
export function shareClient(wrapper: Executor, inner: Executor, isOpen: () => boolean): void {
  wrapped.set(wrapper, () => {
    const client = pgClient(inner);
    return new Proxy(client, {
      get(target, property) {
        if (property === 'query') {
          return (...args: Parameters<pg.PoolClient['query']>) =>
            isOpen()
              ? (target.query as (...a: unknown[]) => unknown)(...args)
              : Promise.reject(
                  new Error('this transaction is over (its step timed out or failed)'),
                );
        }
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  });
}
