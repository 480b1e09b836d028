import { TerminalError } from '../../src/core/errors.ts';
import type { Executor } from '../../src/db/executor.ts';

/**
 * The business SQL of the saga benchmark, shared by the Baton run and the
 * plain baseline so both write exactly the same rows: an order row in the
 * orchestrator's database; in the loyalty database a hold (try), then the
 * hold deleted, the balance lowered and a movement written (confirm).
 */
export const ORDERS_TABLE =
  'CREATE TABLE orders (id text PRIMARY KEY, customer_id text NOT NULL, points int NOT NULL, state text NOT NULL)';

export const LOYALTY_TABLES = `
  CREATE TABLE accounts (customer_id text PRIMARY KEY, balance bigint NOT NULL);
  CREATE TABLE holds (tx_id text, branch text, customer_id text NOT NULL, points int NOT NULL, PRIMARY KEY (tx_id, branch));
  CREATE INDEX holds_customer ON holds (customer_id);
  CREATE TABLE movements (id bigserial PRIMARY KEY, customer_id text NOT NULL, points int NOT NULL, tx_id text, branch text);
`;

/** Customers, each rich enough never to be refused during a run. */
export const CUSTOMERS = 1000;
export const START_BALANCE = 1_000_000_000;

export function seedAccountsSql(): string {
  return `INSERT INTO accounts SELECT 'c' || g, ${START_BALANCE} FROM generate_series(1, ${CUSTOMERS}) g`;
}

export interface Points {
  customerId: string;
  points: number;
}

export async function insertOrder(
  db: Executor,
  order: { id: string; customerId: string; points: number },
): Promise<void> {
  await db.query(`INSERT INTO orders VALUES ($1, $2, $3, 'placed')`, [
    order.id,
    order.customerId,
    order.points,
  ]);
}

/** try: check what is available (locking the account) and hold it. */
export async function holdPoints(
  tx: Executor,
  p: Points,
  txId: string,
  branch: string,
): Promise<{ held: number }> {
  const r = await tx.query<{ available: string }>(
    `SELECT a.balance - coalesce((SELECT sum(points) FROM holds h WHERE h.customer_id = a.customer_id), 0) AS available
     FROM accounts a WHERE customer_id = $1 FOR UPDATE`,
    [p.customerId],
  );
  const available = Number(r.rows[0]?.available ?? -1);
  if (available < p.points) {
    throw new TerminalError(`customer ${p.customerId} has ${available} points, ${p.points} asked`);
  }
  await tx.query('INSERT INTO holds VALUES ($1, $2, $3, $4)', [
    txId,
    branch,
    p.customerId,
    p.points,
  ]);
  return { held: p.points };
}

/** confirm: the hold becomes a movement and leaves the balance. */
export async function spendHold(
  tx: Executor,
  p: Points,
  txId: string,
  branch: string,
): Promise<void> {
  const hold = await tx.query<{ points: number }>(
    'DELETE FROM holds WHERE tx_id = $1 AND branch = $2 RETURNING points',
    [txId, branch],
  );
  const points = hold.rows[0]?.points ?? p.points;
  await tx.query('UPDATE accounts SET balance = balance - $2 WHERE customer_id = $1', [
    p.customerId,
    points,
  ]);
  await tx.query(
    'INSERT INTO movements (customer_id, points, tx_id, branch) VALUES ($1, $2, $3, $4)',
    [p.customerId, -points, txId, branch],
  );
}

export async function releaseHold(tx: Executor, txId: string, branch: string): Promise<void> {
  await tx.query('DELETE FROM holds WHERE tx_id = $1 AND branch = $2', [txId, branch]);
}

/** After a run: every order's points moved exactly once, no hold left. */
export async function checkConsistency(
  orders: Executor,
  loyalty: Executor,
): Promise<{ orders: number; movements: number; holdsLeft: number; consistent: boolean }> {
  const o = await orders.query<{ n: string; points: string }>(
    `SELECT count(*) AS n, coalesce(sum(points), 0) AS points FROM orders WHERE state = 'placed'`,
  );
  const m = await loyalty.query<{ n: string; points: string; holds: string; balance: string }>(
    `SELECT (SELECT count(*) FROM movements) AS n, (SELECT coalesce(-sum(points), 0) FROM movements) AS points,
            (SELECT count(*) FROM holds) AS holds,
            (SELECT ${CUSTOMERS}::bigint * ${START_BALANCE} - sum(balance) FROM accounts) AS balance`,
  );
  const orderCount = Number(o.rows[0]?.n);
  const row = m.rows[0];
  const consistent =
    orderCount === Number(row?.n) &&
    o.rows[0]?.points === row?.points &&
    row?.points === row?.balance &&
    Number(row?.holds) === 0;
  return {
    orders: orderCount,
    movements: Number(row?.n),
    holdsLeft: Number(row?.holds),
    consistent,
  };
}
