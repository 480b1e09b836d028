// Baton in the catalog service: it owns products, and holds stock for orders' sagas.
import { createBaton, TerminalError } from 'baton';
import { batonMiddleware } from 'baton/node';
import { PgDatabase, pgClient } from 'baton/pg';
import { eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { products } from './schema.ts';

export function catalogBaton(config: { databaseUrl: string; secret: string }) {
  const baton = createBaton({
    db: new PgDatabase({ connectionString: config.databaseUrl }),
    service: 'catalog',
  });
  baton.entity({ name: 'product', table: 'products', key: 'id', fields: ['name'] });

  type Hold = { productId: string; quantity: number };
  const stock = (tx: Parameters<typeof pgClient>[0], h: Hold, by: number) =>
    drizzle({ client: pgClient(tx) })
      .update(products)
      .set({ stock: sql`${products.stock} + ${by}` })
      .where(eq(products.id, h.productId))
      .returning({ stock: products.stock });
  baton.participant.reservation<Hold, { held: number }>('stock', {
    try: async (tx, hold) => {
      const [row] = await stock(tx, hold, -hold.quantity);
      if (!row || row.stock < 0) throw new TerminalError(`not enough stock of ${hold.productId}`);
      return { held: hold.quantity };
    },
    confirm: async () => {}, // the stock left with the order
    cancel: async (tx, hold) => void (await stock(tx, hold, hold.quantity)),
  });

  const relay = baton.relay();
  return {
    baton,
    middleware: batonMiddleware(
      baton.httpHandler({ auth: { type: 'hmac', secrets: [config.secret] } }),
    ),
    start: async () => {
      await baton.migrate();
      await baton.install();
      await relay.start();
    },
    stop: () => relay.stop(),
  };
}
