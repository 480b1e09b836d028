// The two services' tables, as Drizzle declares them (drizzle-kit would create them).
import { eq } from 'drizzle-orm';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { integer, pgTable, text } from 'drizzle-orm/pg-core';

export const products = pgTable('products', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  stock: integer('stock').notNull(),
});

export const orders = pgTable('orders', {
  id: text('id').primaryKey(),
  productId: text('productId'), // camelCase, quoted: as Drizzle and TypeORM write them
  productName: text('productName'),
  quantity: integer('quantity').notNull(),
  state: text('state').notNull(),
});

export const CREATE_TABLES = {
  catalog: `CREATE TABLE IF NOT EXISTS products (id text PRIMARY KEY, name text NOT NULL, stock integer NOT NULL)`,
  orders: `CREATE TABLE IF NOT EXISTS orders (id text PRIMARY KEY, "productId" text, "productName" text,
    quantity integer NOT NULL, state text NOT NULL)`,
};

export type PlaceOrder = { orderId: string; productId: string; quantity: number };

/** The app's own order writes, on any Drizzle database (the pool, or Baton's transaction in a step). */
export const orderWrites = (db: Pick<NodePgDatabase, 'insert' | 'update'>) => ({
  create: async (o: PlaceOrder) =>
    void (await db.insert(orders).values({ id: o.orderId, ...o, state: 'pending' })),
  setState: async (id: string, state: string) =>
    void (await db.update(orders).set({ state }).where(eq(orders.id, id))),
});
