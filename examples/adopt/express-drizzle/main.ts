// Runs the two services and walks through what adopting Baton gave them; exits 0 only if every check holds.
// Databases: CATALOG_DATABASE_URL and ORDERS_DATABASE_URL, or an embedded PostgreSQL when they are not set.
import { randomBytes } from 'node:crypto';
import { PgDatabase, startEmbeddedPostgres } from 'baton/pg';
import { startCatalog } from './catalog.ts';
import { startOrders } from './orders.ts';

const secret = randomBytes(24).toString('hex');
let embedded: Awaited<ReturnType<typeof startEmbeddedPostgres>> | undefined;
async function databases(): Promise<[string, string]> {
  const { CATALOG_DATABASE_URL: catalog, ORDERS_DATABASE_URL: orders } = process.env;
  if (catalog && orders) return [catalog, orders];
  embedded = await startEmbeddedPostgres();
  const admin = new PgDatabase({ connectionString: embedded.url() });
  for (const name of ['catalog', 'orders']) await admin.query(`CREATE DATABASE ${name}`);
  await admin.close();
  return [embedded.url('catalog'), embedded.url('orders')];
}

const [catalogDb, ordersDb] = await databases();
const catalog = await startCatalog({ databaseUrl: catalogDb, secret });
const orders = await startOrders({ databaseUrl: ordersDb, secret, catalogUrl: catalog.url });

const call = async (url: string, method = 'GET', body?: unknown) => {
  const res = await fetch(url, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: res.status === 204 ? null : await res.json() };
};
async function until<T>(
  what: string,
  read: () => Promise<T>,
  ok: (value: T) => boolean,
): Promise<T> {
  for (let deadline = Date.now() + 20_000; ; ) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const results: { check: string; ok: boolean }[] = [];
const check = (name: string, ok: boolean) => {
  results.push({ check: name, ok });
  console.log(`${ok ? '✓' : '✗'} ${name}`);
};
/** An order the saga has decided: placed or rejected. */
const decided = (o: { state?: string } | undefined) =>
  o?.state === 'placed' || o?.state === 'rejected';
const order = (id: string) => async () => (await call(`${orders.url}/orders/${id}`)).body;
const stockOf = async (id: string) => (await call(`${catalog.url}/products/${id}`)).body.stock;

try {
  await call(`${catalog.url}/products`, 'POST', { id: 'lamp', name: 'Lamp', stock: 5 });
  await call(`${catalog.url}/products`, 'POST', { id: 'desk', name: 'Desk', stock: 1 });

  await call(`${orders.url}/orders`, 'POST', { orderId: 'o1', productId: 'lamp', quantity: 2 });
  const o1 = await until('o1 placed', order('o1'), decided);
  check('an order for a known product is placed by the saga', o1?.state === 'placed');
  check('and its stock is held at the catalog (5 → 3)', (await stockOf('lamp')) === 3);

  await call(`${orders.url}/orders`, 'POST', { orderId: 'o2', productId: 'desk', quantity: 5 });
  const o2 = await until('o2 decided', order('o2'), decided);
  check('an order beyond the stock is rejected (compensated)', o2?.state === 'rejected');
  check('and the catalog holds nothing for it', (await stockOf('desk')) === 1);

  const unknown = await call(`${orders.url}/orders`, 'POST', {
    orderId: 'o3',
    productId: 'ghost',
    quantity: 1,
  });
  check('an order for a product that does not exist is refused (422)', unknown.status === 422);

  await call(`${catalog.url}/products/lamp`, 'DELETE');
  const kept = await until(
    'the snapshot of lamp',
    order('o1'),
    (o) => typeof o?.productName === 'string',
  );
  check("a deleted product's orders keep a snapshot of its name", kept.productName === 'Lamp');
  const late = await call(`${orders.url}/orders`, 'POST', {
    orderId: 'o4',
    productId: 'lamp',
    quantity: 1,
  });
  check('a new order for the deleted product is refused (422)', late.status === 422);
} catch (error) {
  check(`the walk-through ran to its end (${(error as Error).message})`, false);
} finally {
  await orders.stop();
  await catalog.stop();
  await embedded?.stop();
}
console.log(
  JSON.stringify({
    passed: results.filter((r) => r.ok).length,
    failed: results.filter((r) => !r.ok).length,
  }),
);
process.exitCode = results.every((r) => r.ok) ? 0 : 1;
