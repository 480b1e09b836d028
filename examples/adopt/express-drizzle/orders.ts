// The orders service: an Express app with Drizzle; placing an order starts Baton's saga in the same transaction.
import type { Server } from 'node:http';
import { ReferenceViolation } from 'baton';
import { fromDrizzle } from 'baton/drizzle';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import express from 'express';
import pg from 'pg';
import { ordersBaton } from './orders-baton.ts';
import { CREATE_TABLES, orders, orderWrites, type PlaceOrder } from './schema.ts';

export async function startOrders(config: {
  databaseUrl: string;
  secret: string;
  catalogUrl: string;
  port?: number;
}) {
  const pool = new pg.Pool({ connectionString: config.databaseUrl });
  pool.on('error', () => {}); // an idle client whose server went away: the next query reconnects
  await pool.query(CREATE_TABLES.orders);
  const db = drizzle({ client: pool });
  const { baton, product, middleware, workers } = ordersBaton(config);
  const running = await baton.start({ workers });

  const app = express();
  app.use(middleware);
  app.use(express.json());
  app.post('/orders', async (req, res) => {
    const order = req.body as PlaceOrder;
    try {
      await db.transaction(async (tx) => {
        // An unknown or deleted product is refused here, in the request, not later in the saga.
        await product.check(fromDrizzle(tx), order.productId);
        await orderWrites(tx).create(order);
        await baton.sagas.start('place-order', order, {
          id: `place:${order.orderId}`,
          tx: fromDrizzle(tx),
        });
      });
      res.status(202).json({ orderId: order.orderId });
    } catch (error) {
      if (!(error instanceof ReferenceViolation)) throw error;
      res.status(error.reason === 'owner-unreachable' ? 503 : 422).json({ error: error.message });
    }
  });
  app.get('/orders/:id', async (req, res) => {
    const [row] = await db.select().from(orders).where(eq(orders.id, req.params.id));
    res.status(row ? 200 : 404).json(row ?? { error: 'no such order' });
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(config.port ?? 0, '127.0.0.1', () => resolve(s));
  });
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}`,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await running.stop();
      await baton.db.close();
      await pool.end();
    },
  };
}
