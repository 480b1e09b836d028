import type { Executor, QueryResult } from '../db/executor.ts';
import { splitPlaceholders } from './placeholders.ts';

/**
 * `baton/knex`: a Knex transaction (PostgreSQL client) as the executor Baton
 * writes with — `publish`, `check` and `sagas.start` then join it:
 *
 *   await knex.transaction(async (trx) => {
 *     await trx('orders').insert(order);
 *     await baton.publish(fromKnex(trx), { type: 'order.placed', key, payload });
 *   });
 *
 * The other way round — Knex inside Baton's transaction (a saga step, a
 * handler) — use `.connection(tx)` on a query: `knex('t').insert(row).connection(tx)`.
 */
export interface KnexLike {
  raw(sql: string, bindings: readonly unknown[]): PromiseLike<unknown>;
}

export function fromKnex(knex: KnexLike): Executor {
  return {
    async query<R>(text: string, values: unknown[] = []): Promise<QueryResult<R>> {
      const { pieces, params } = splitPlaceholders(text, values);
      // Knex binds `?` (and `??` for identifiers): a literal `?` (jsonb operators) is escaped.
      const escaped = pieces.map((piece) => piece.replaceAll('?', '\\?'));
      const result = (await knex.raw(escaped.join('?'), params)) as {
        rows: R[];
        rowCount: number | null;
      };
      return { rows: result.rows, rowCount: result.rowCount };
    },
  };
}
