import { type SQL, sql } from 'drizzle-orm';
import type { Executor, QueryResult } from '../db/executor.ts';
import { splitPlaceholders } from './placeholders.ts';

/**
 * `baton/drizzle`: a Drizzle transaction (node-postgres or postgres.js
 * driver) as the executor Baton writes with — `publish`, `check` and
 * `sagas.start` then join it:
 *
 *   await db.transaction(async (tx) => {
 *     await tx.insert(orders).values(order);
 *     await baton.publish(fromDrizzle(tx), { type: 'order.placed', key, payload });
 *   });
 */
export interface DrizzleLike {
  execute(query: SQL): PromiseLike<unknown>;
}

export function fromDrizzle(db: DrizzleLike): Executor {
  return {
    async query<R>(text: string, values: unknown[] = []): Promise<QueryResult<R>> {
      const { pieces, params } = splitPlaceholders(text, values);
      const chunks: SQL[] = [sql.raw(pieces[0] as string)];
      params.forEach((value, i) => {
        // sql.param: one parameter even for an array (a template would spread it into a list).
        chunks.push(sql`${sql.param(value)}`, sql.raw(pieces[i + 1] as string));
      });
      const result = await db.execute(sql.join(chunks));
      // node-postgres answers { rows, rowCount }; postgres.js a row array with `count`.
      if (Array.isArray(result)) {
        const list = result as R[] & { count?: number };
        return { rows: [...list], rowCount: list.count ?? list.length };
      }
      const { rows, rowCount } = result as { rows: R[]; rowCount?: number | null };
      return { rows, rowCount: rowCount ?? rows.length };
    },
  };
}
