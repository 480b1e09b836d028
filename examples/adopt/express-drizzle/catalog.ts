// The catalog service: an Express app with Drizzle, and Baton mounted beside its routes.
import type { Server } from 'node:http';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import express from 'express';
import pg from 'pg';
import { catalogBaton } from './catalog-baton.ts';
import { CREATE_TABLES, products } from './schema.ts';

export async function startCatalog(config: { databaseUrl: string; secret: string; port?: number }) {
  const pool = new pg.Pool({ connectionString: config.databaseUrl });
  pool.on('error', () => {}); // an idle client whose server went away: the next query reconnects
  await pool.query(CREATE_TABLES.catalog);
  const db = drizzle({ client: pool });
  const { baton, middleware } = catalogBaton(config);
  const running = await baton.start(); // migrate, install, relay

  const app = express();
  app.use(middleware); // before the JSON parser: Baton checks signatures over raw bodies
  app.use(express.json());
  app.post('/products', async (req, res) => {
    await db.insert(products).values(req.body);
    res.status(201).json(req.body);
  });
  app.get('/products/:id', async (req, res) => {
    const [row] = await db.select().from(products).where(eq(products.id, req.params.id));
    res.status(row ? 200 : 404).json(row ?? { error: 'no such product' });
  });
  app.delete('/products/:id', async (req, res) => {
    await db.delete(products).where(eq(products.id, req.params.id));
    res.status(204).end();
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
