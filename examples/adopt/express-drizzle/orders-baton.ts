// Baton in the orders service: orders point at the catalog's products, and a saga holds stock.
import { createBaton, httpFeedSource, ownerClient, participantClient, saga } from 'baton';
import { batonMiddleware } from 'baton/node';
import { PgDatabase, pgClient } from 'baton/pg';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { orders } from './schema.ts';

export type PlaceOrder = { orderId: string; productId: string; quantity: number };

export function ordersBaton(config: { databaseUrl: string; secret: string; catalogUrl: string }) {
  const baton = createBaton({
    db: new PgDatabase({ connectionString: config.databaseUrl }),
    service: 'orders',
  });
  const catalog = {
    name: 'catalog',
    url: `${config.catalogUrl}/baton`,
    auth: { type: 'hmac', secret: config.secret },
  } as const;
  const feed = baton.consumer({ name: 'orders-from-catalog', source: httpFeedSource(catalog) });
  baton.replicate({ entity: 'product', owner: ownerClient(catalog), consumer: feed });
  const product = baton.reference({
    table: 'orders',
    column: 'productId',
    entity: 'product',
    onDelete: 'keep',
    snapshotColumns: { name: 'productName' },
  });

  const stock = participantClient(catalog);
  const setState = async (tx: Parameters<typeof pgClient>[0], id: string, state: string) =>
    void (await drizzle({ client: pgClient(tx) })
      .update(orders)
      .set({ state })
      .where(eq(orders.id, id)));
  baton.sagas.define(
    saga('place-order', async (ctx, o: PlaceOrder) => {
      await ctx.step(
        'create',
        async (tx) =>
          void (await drizzle({ client: pgClient(tx) })
            .insert(orders)
            .values({
              id: o.orderId,
              productId: o.productId,
              quantity: o.quantity,
              state: 'pending',
            })),
        { compensate: (tx) => setState(tx, o.orderId, 'rejected') },
      );
      await ctx.reserve('hold-stock', stock, 'stock', {
        productId: o.productId,
        quantity: o.quantity,
      });
      await ctx.step('accept', (tx) => setState(tx, o.orderId, 'placed'));
    }),
  );

  const parts = [baton.relay(), feed, baton.sagas.worker()];
  return {
    baton,
    product,
    middleware: batonMiddleware(
      baton.httpHandler({ auth: { type: 'hmac', secrets: [config.secret] } }),
    ),
    start: async () => {
      await baton.migrate();
      await baton.install();
      for (const p of parts) await p.start();
    },
    stop: async () => {
      for (const p of parts.reverse()) await p.stop();
    },
  };
}
