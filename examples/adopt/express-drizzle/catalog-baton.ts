// Baton in the catalog service: it owns products, and holds stock for orders' sagas.
import { createBaton, type Executor, TerminalError } from 'baton';
import { batonMiddleware } from 'baton/node';
import { PgDatabase, pgClient } from 'baton/pg';
import { eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { products } from './schema.ts';

type Hold = { productId: string; quantity: number };

/** Moves a product's stock, with Drizzle bound to Baton's transaction. */
const moveStock = (tx: Executor, hold: Hold, by: number) =>
  drizzle({ client: pgClient(tx) })
    .update(products)
    .set({ stock: sql`${products.stock} + ${by}` })
    .where(eq(products.id, hold.productId))
    .returning({ stock: products.stock });

export function catalogBaton(config: { databaseUrl: string; secret: string }) {
  const db = new PgDatabase({ connectionString: config.databaseUrl });
  const baton = createBaton({ db, service: 'catalog' });
  baton.entity({ name: 'product', table: 'products', key: 'id', fields: ['name'] });
  baton.participant.reservation<Hold, { held: number }>('stock', {
    try: async (tx, hold) => {
      const [row] = await moveStock(tx, hold, -hold.quantity);
      if (!row || row.stock < 0) throw new TerminalError(`not enough stock of ${hold.productId}`);
      return { held: hold.quantity };
    },
    confirm: async () => {}, // the stock left with the order
    cancel: async (tx, hold) => void (await moveStock(tx, hold, hold.quantity)),
  });
  const auth = { type: 'hmac', secrets: [config.secret] } as const;
  return { baton, middleware: batonMiddleware(baton.httpHandler({ auth })) };
}
