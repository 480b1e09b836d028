import { CompiledQuery, Kysely, PostgresDialect } from 'kysely';
import type { Executor, QueryResult } from '../db/executor.ts';
import { pgClient } from '../db/pg-client.ts';

/**
 * `baton/kysely`: a Kysely transaction (or instance) as the executor Baton
 * writes with — `publish`, `check` and `sagas.start` then join it:
 *
 *   await db.transaction().execute(async (trx) => {
 *     await trx.insertInto('orders').values(order).execute();
 *     await baton.publish(fromKysely(trx), { type: 'order.placed', key, payload });
 *   });
 */
export interface KyselyLike {
  executeQuery<R>(
    query: CompiledQuery<R>,
  ): Promise<{ rows: R[]; numAffectedRows?: bigint; numChangedRows?: bigint }>;
}

export function fromKysely(db: KyselyLike): Executor {
  return {
    async query<R>(text: string, values: unknown[] = []): Promise<QueryResult<R>> {
      const result = await db.executeQuery(CompiledQuery.raw(text, values) as CompiledQuery<R>);
      const affected = result.numAffectedRows;
      return {
        rows: result.rows,
        rowCount: affected === undefined ? result.rows.length : Number(affected),
      };
    },
  };
}

/**
 * The other way round: a Kysely instance on Baton's transaction (`tx` in a
 * saga step, a handler, a participant), so your typed queries commit or roll
 * back with Baton's work. Cheap to create per transaction.
 */
export function kyselyOn<DB>(tx: Executor): Kysely<DB> {
  const client = pgClient(tx);
  const pool = {
    connect: async () => ({
      query: client.query.bind(client),
      release: () => {}, // Baton releases it when its transaction ends
    }),
    end: async () => {},
  };
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool: pool as never }) });
}
