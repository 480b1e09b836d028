// Baton in the orders service: orders point at the catalog's products, and a saga holds stock.
import type { Executor } from 'baton';
import { createBaton, httpFeedSource, ownerClient, participantClient, saga } from 'baton';
import { batonMiddleware } from 'baton/node';
import { PgDatabase, pgClient } from 'baton/pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { orderWrites, type PlaceOrder } from './schema.ts';

/** The app's order writes, with Drizzle bound to Baton's transaction. */
const writesIn = (tx: Executor) => orderWrites(drizzle({ client: pgClient(tx) }));

export function ordersBaton(config: { databaseUrl: string; secret: string; catalogUrl: string }) {
  const db = new PgDatabase({ connectionString: config.databaseUrl });
  const baton = createBaton({ db, service: 'orders' });
  const auth = { type: 'hmac', secret: config.secret } as const;
  const catalog = { name: 'catalog', url: `${config.catalogUrl}/baton`, auth };
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
  baton.sagas.define(
    saga(
      'place-order',
      async (ctx, o: PlaceOrder) => {
        await ctx.reserve('hold-stock', stock, 'stock', o); // the catalog reads productId, quantity
        await ctx.step('accept', (tx) => writesIn(tx).setState(o.orderId, 'placed'));
      },
      // the order row came with the saga's start (orders.ts): compensating rejects it
      { compensateStart: (tx, o) => writesIn(tx).setState(o.orderId, 'rejected') },
    ),
  );
  const served = { auth: { type: 'hmac', secrets: [config.secret] } } as const;
  const middleware = batonMiddleware(baton.httpHandler(served));
  return { baton, product, middleware, workers: [feed, baton.sagas.worker()] };
}
