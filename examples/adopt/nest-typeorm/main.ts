// Runs the two services and walks through what adopting Baton gave them; exits 0 only if every check holds.
// Databases: ACCOUNTS_DATABASE_URL and ORDERS_DATABASE_URL, or an embedded PostgreSQL when they are not set.
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { PgDatabase, startEmbeddedPostgres } from 'baton/pg';
import { startAccounts, startOrders } from './services';

type Json = Record<string, unknown> | null;

async function databases(): Promise<{ urls: [string, string]; stop: () => Promise<void> }> {
  const { ACCOUNTS_DATABASE_URL: accounts, ORDERS_DATABASE_URL: orders } = process.env;
  if (accounts && orders) return { urls: [accounts, orders], stop: async () => {} };
  const embedded = await startEmbeddedPostgres();
  const admin = new PgDatabase({ connectionString: embedded.url() });
  for (const name of ['accounts', 'orders']) await admin.query(`CREATE DATABASE ${name}`);
  await admin.close();
  return { urls: [embedded.url('accounts'), embedded.url('orders')], stop: () => embedded.stop() };
}

async function call(
  url: string,
  method = 'GET',
  body?: unknown,
): Promise<{ status: number; body: Json }> {
  const res = await fetch(url, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Json) : null };
}

async function until(
  what: string,
  read: () => Promise<Json>,
  ok: (value: Json) => boolean,
): Promise<Json> {
  for (const deadline = Date.now() + 20_000; ; ) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(): Promise<boolean> {
  const secret = randomBytes(24).toString('hex');
  const db = await databases();
  const accounts = await startAccounts({ databaseUrl: db.urls[0], secret });
  const orders = await startOrders({ databaseUrl: db.urls[1], secret, accountsUrl: accounts.url });
  const results: boolean[] = [];
  const check = (name: string, ok: boolean) => {
    results.push(ok);
    console.log(`${ok ? '✓' : '✗'} ${name}`);
  };
  const order = (id: string) => async () => (await call(`${orders.url}/orders/${id}`)).body;
  const credit = async (id: string) => (await call(`${accounts.url}/users/${id}`)).body?.credit;
  try {
    await call(`${accounts.url}/users`, 'POST', { id: 'ada', firstName: 'Ada', credit: 100 });
    await call(`${accounts.url}/users`, 'POST', { id: 'bob', firstName: 'Bob', credit: 10 });

    await call(`${orders.url}/orders`, 'POST', { orderId: 'o1', userId: 'ada', amount: 30 });
    const o1 = await until(
      'o1 decided',
      order('o1'),
      (o) => o?.state === 'placed' || o?.state === 'rejected',
    );
    check('an order for a known user is placed by the saga', o1?.state === 'placed');
    check('and its credit is held at accounts (100 → 70)', (await credit('ada')) === 70);

    await call(`${orders.url}/orders`, 'POST', { orderId: 'o2', userId: 'bob', amount: 50 });
    const o2 = await until(
      'o2 decided',
      order('o2'),
      (o) => o?.state === 'placed' || o?.state === 'rejected',
    );
    check('an order beyond the credit is rejected (compensated)', o2?.state === 'rejected');
    check('and accounts holds nothing for it', (await credit('bob')) === 10);

    const unknown = await call(`${orders.url}/orders`, 'POST', {
      orderId: 'o3',
      userId: 'ghost',
      amount: 1,
    });
    check('an order for a user who does not exist is refused (422)', unknown.status === 422);

    await call(`${accounts.url}/users/ada`, 'DELETE');
    const kept = await until(
      'the snapshot of ada',
      order('o1'),
      (o) => typeof o?.userFirstName === 'string',
    );
    check(
      "a deleted user's orders keep a snapshot of her first name",
      kept?.userFirstName === 'Ada',
    );
    const late = await call(`${orders.url}/orders`, 'POST', {
      orderId: 'o4',
      userId: 'ada',
      amount: 1,
    });
    check('a new order for the deleted user is refused (422)', late.status === 422);
  } catch (error) {
    check(`the walk-through ran to its end (${(error as Error).message})`, false);
  } finally {
    await orders.stop();
    await accounts.stop();
    await db.stop();
  }
  console.log(
    JSON.stringify({
      passed: results.filter(Boolean).length,
      failed: results.filter((r) => !r).length,
    }),
  );
  return results.every(Boolean);
}

main().then(
  (ok) => {
    process.exitCode = ok ? 0 : 1;
  },
  (error) => {
    console.error(error);
    process.exitCode = 1;
  },
);
