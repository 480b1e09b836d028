import type { Executor, QueryResult } from '../db/executor.ts';

/**
 * `baton/typeorm`: a TypeORM transaction as the executor Baton writes with —
 * `publish`, `check` and `sagas.start` then join it:
 *
 *   await dataSource.transaction(async (manager) => {
 *     await manager.save(order);
 *     await baton.publish(fromTypeORM(manager), { type: 'order.placed', key, payload });
 *   });
 *
 * Pass the transaction's EntityManager or its QueryRunner (PostgreSQL driver).
 */
export interface TypeOrmQueryRunnerLike {
  readonly isTransactionActive: boolean;
  query(
    query: string,
    parameters: unknown[] | undefined,
    useStructuredResult: true,
  ): Promise<{ records: unknown[]; affected?: number }>;
}

export interface TypeOrmEntityManagerLike {
  readonly queryRunner?: TypeOrmQueryRunnerLike;
}

export function fromTypeORM(
  transaction: TypeOrmEntityManagerLike | TypeOrmQueryRunnerLike,
): Executor {
  const runner = 'isTransactionActive' in transaction ? transaction : transaction.queryRunner;
  if (!runner?.isTransactionActive)
    throw new TypeError(
      "fromTypeORM needs the EntityManager of a transaction (dataSource.transaction(async (manager) => …)) or its QueryRunner: this manager runs outside one, so Baton's writes could not join your transaction",
    );
  return {
    async query<R>(text: string, values: unknown[] = []): Promise<QueryResult<R>> {
      const result = await runner.query(text, values, true);
      const rows = (Array.isArray(result.records) ? result.records : []) as R[];
      return { rows, rowCount: result.affected ?? rows.length };
    },
  };
}
