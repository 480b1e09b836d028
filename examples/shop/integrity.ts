import pg from 'pg';
import type { ServiceName } from './launcher.ts';
import { request } from './shop-client.ts';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

type Urls = Record<ServiceName, string>;

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function count(url: string, sql: string): Promise<number> {
  return withClient(url, async (c) => Number((await c.query<{ n: string }>(sql)).rows[0]?.n ?? 0));
}

/**
 * The shop's integrity checks, each named, each read from the databases
 * themselves (and one caretaker dry run per referrer): what the demo ends
 * with and what the chaos checker builds on.
 */
export async function integrityChecks(
  databases: Urls,
  urls: Urls,
  adminToken: string,
): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });

  const open = await count(
    databases.orders,
    "SELECT count(*) AS n FROM baton.sagas WHERE state NOT IN ('completed', 'compensated')",
  );
  add('every saga ended (completed or compensated)', open === 0, `${open} not terminal`);

  const pendingOrders = await count(
    databases.orders,
    "SELECT count(*) AS n FROM orders WHERE state = 'pending'",
  );
  add('no order left pending', pendingOrders === 0, `${pendingOrders} pending`);

  const holds = await count(databases.loyalty, 'SELECT count(*) AS n FROM holds');
  add('no reservation left in try (no holds)', holds === 0, `${holds} holds`);

  const ledger = await count(
    databases.loyalty,
    `SELECT count(*) AS n FROM accounts a
     WHERE a.balance <> (SELECT coalesce(sum(points), 0) FROM movements m WHERE m.customer_id = a.customer_id)`,
  );
  add('every balance = the sum of its movements', ledger === 0, `${ledger} accounts off`);

  const negative = await count(
    databases.loyalty,
    'SELECT count(*) AS n FROM accounts WHERE balance < 0',
  );
  add('no balance below zero', negative === 0, `${negative} negative`);

  for (const referrer of ['orders', 'loyalty'] as const) {
    const table = referrer === 'orders' ? 'orders' : 'accounts';
    const dangling = await count(
      databases[referrer],
      `SELECT count(*) AS n FROM ${table} t LEFT JOIN baton.replica_customer r ON r.id = t.customer_id
       WHERE t.customer_id IS NOT NULL AND r.id IS NULL`,
    );
    add(
      `${referrer}: no row refers to a customer the replica does not know`,
      dangling === 0,
      `${dangling} dangling`,
    );
    const report = await request<{
      totals: { differences: number; referencingRowProblems: number };
    }>(
      urls[referrer],
      'POST',
      '/admin/reconcile',
      { repair: false },
      { authorization: `Bearer ${adminToken}` },
      60_000,
    );
    const diffs = report.body.totals?.differences ?? -1;
    const refs = report.body.totals?.referencingRowProblems ?? -1;
    add(
      `${referrer}: replica of customers equals the owner (caretaker dry run)`,
      diffs === 0 && refs === 0,
      `${diffs} differences, ${refs} referencing-row problems`,
    );
  }

  const deletedWithAccounts = await count(
    databases.loyalty,
    "SELECT count(*) AS n FROM accounts a JOIN baton.replica_customer r ON r.id = a.customer_id WHERE r.state = 'DELETED'",
  );
  add(
    'loyalty: deleted customers have no account (cascade)',
    deletedWithAccounts === 0,
    `${deletedWithAccounts} left`,
  );

  const keptWithoutSnapshot = await count(
    databases.orders,
    "SELECT count(*) AS n FROM orders o JOIN baton.replica_customer r ON r.id = o.customer_id WHERE r.state = 'DELETED' AND o.customer_name IS NULL",
  );
  add(
    "orders: deleted customers' orders kept with a snapshot (keep)",
    keptWithoutSnapshot === 0,
    `${keptWithoutSnapshot} without snapshot`,
  );

  for (const service of ['customers', 'orders', 'loyalty'] as const) {
    const dead = await count(
      databases[service],
      "SELECT count(*) AS n FROM baton.inbox WHERE status = 'dead'",
    );
    const backlog = await count(
      databases[service],
      'SELECT count(*) AS n FROM baton.outbox WHERE seq IS NULL',
    );
    add(
      `${service}: no dead letters, outbox drained`,
      dead === 0 && backlog === 0,
      `${dead} dead letters, ${backlog} unrelayed`,
    );
  }
  return checks;
}
