import type { Executor, ReservationHandlers } from '../../src/index.ts';
import { TerminalError } from '../../src/index.ts';

/**
 * The loyalty service's `points` reservation — the one the demo ships, and
 * the one the tests and the saga benchmark exercise: try holds points (if
 * the account has them available), confirm turns the hold into a spend
 * movement and lowers the balance, cancel releases the hold. The barrier
 * (Baton's, around each call) makes every call safe to repeat and out of
 * order; these functions only do the business writes.
 */
export const LOYALTY_TABLES = `
  CREATE TABLE IF NOT EXISTS accounts (customer_id text PRIMARY KEY, balance int NOT NULL);
  CREATE TABLE IF NOT EXISTS holds (tx_id text, branch text, customer_id text NOT NULL, points int NOT NULL,
    PRIMARY KEY (tx_id, branch));
  CREATE INDEX IF NOT EXISTS holds_customer ON holds (customer_id);
  CREATE TABLE IF NOT EXISTS movements (id bigserial PRIMARY KEY, customer_id text NOT NULL, points int NOT NULL,
    kind text NOT NULL, reference text NOT NULL UNIQUE, at timestamptz NOT NULL DEFAULT now());`;

export interface PointsRequest {
  customerId: string;
  points: number;
  /** The order the points are for (refunds name it). */
  orderId?: string;
}

/** A saga branch: the transaction id and branch Baton's barrier keys calls by. */
export interface Branch {
  txId: string;
  branch: string;
}

/** try: check what is available (locking the account) and hold it; refuse for good otherwise. */
export async function holdPoints(
  tx: Executor,
  p: PointsRequest,
  call: Branch,
): Promise<{ held: number }> {
  if (!(Number.isInteger(p?.points) && p.points > 0 && typeof p.customerId === 'string'))
    throw new TerminalError('points must be a positive integer, for a customerId');
  const r = await tx.query<{ available: number }>(
    `SELECT a.balance - coalesce((SELECT sum(points) FROM holds h WHERE h.customer_id = a.customer_id), 0) AS available
     FROM accounts a WHERE customer_id = $1 FOR UPDATE`,
    [p.customerId],
  );
  if (!r.rows[0]) throw new TerminalError(`customer ${p.customerId} has no loyalty account`);
  const available = Number(r.rows[0].available);
  if (available < p.points)
    throw new TerminalError(
      `customer ${p.customerId} has ${available} points available, ${p.points} asked`,
    );
  await tx.query('INSERT INTO holds VALUES ($1, $2, $3, $4)', [
    call.txId,
    call.branch,
    p.customerId,
    p.points,
  ]);
  return { held: p.points };
}

/**
 * confirm: the hold becomes a spend movement and leaves the balance. The
 * barrier runs a confirm only after a try that held, so a missing hold means
 * the customer was deleted meanwhile (holds cascade): nothing is left to book.
 */
export async function spendHold(tx: Executor, _p: PointsRequest, call: Branch): Promise<void> {
  // The hold says whose points and how many: a confirm's payload is the caller's word, not the hold's.
  const hold = await tx.query<{ customer_id: string; points: number }>(
    'DELETE FROM holds WHERE tx_id = $1 AND branch = $2 RETURNING customer_id, points',
    [call.txId, call.branch],
  );
  const held = hold.rows[0];
  if (held === undefined) return;
  await tx.query('UPDATE accounts SET balance = balance - $2 WHERE customer_id = $1', [
    held.customer_id,
    held.points,
  ]);
  await tx.query(
    "INSERT INTO movements (customer_id, points, kind, reference) VALUES ($1, $2, 'spend', $3)",
    [held.customer_id, -held.points, `spend:${call.txId}`],
  );
}

/**
 * The `refund` action: gives back the points an order spent — to the
 * customer who spent them, at most what was spent, once per order (a
 * second refund of the order, under another idempotency key, refunds
 * nothing). Refused for good (TerminalError: a 4xx the caller does not
 * retry) when the request is malformed, asks for more than was spent, or
 * names another customer. An order that spent nothing (or whose customer's
 * account is gone) refunds 0.
 */
export async function refundPoints(tx: Executor, p: PointsRequest): Promise<{ refunded: number }> {
  if (
    typeof p?.orderId !== 'string' ||
    !/^[A-Za-z0-9_.:-]{1,100}$/.test(p.orderId) ||
    typeof p.customerId !== 'string' ||
    !(Number.isInteger(p.points) && p.points > 0)
  )
    throw new TerminalError(
      'a refund is { orderId, customerId, points } with points a positive integer',
    );
  const spend = await tx.query<{ customer_id: string; spent: number }>(
    "SELECT customer_id, -points AS spent FROM movements WHERE reference = 'spend:place:' || $1",
    [p.orderId],
  );
  const spent = spend.rows[0];
  if (spent === undefined) return { refunded: 0 };
  if (spent.customer_id !== p.customerId)
    throw new TerminalError(`order ${p.orderId} was not paid by customer ${p.customerId}`);
  if (p.points > spent.spent)
    throw new TerminalError(
      `order ${p.orderId} spent ${spent.spent} points; ${p.points} asked back`,
    );
  // No account any more (the customer was deleted, its movements with it): nothing to give back.
  const account = await tx.query('SELECT 1 FROM accounts WHERE customer_id = $1 FOR UPDATE', [
    spent.customer_id,
  ]);
  if (account.rowCount !== 1) return { refunded: 0 };
  const booked = await tx.query(
    `INSERT INTO movements (customer_id, points, kind, reference) VALUES ($1, $2, 'refund', $3)
     ON CONFLICT (reference) DO NOTHING`,
    [spent.customer_id, p.points, `refund:${p.orderId}`],
  );
  if (booked.rowCount !== 1) return { refunded: 0 }; // this order was refunded before
  await tx.query('UPDATE accounts SET balance = balance + $2 WHERE customer_id = $1', [
    spent.customer_id,
    p.points,
  ]);
  return { refunded: p.points };
}

/** cancel: the hold goes (a cancel with nothing held is a no-op). */
export async function releaseHold(tx: Executor, call: Branch): Promise<void> {
  await tx.query('DELETE FROM holds WHERE tx_id = $1 AND branch = $2', [call.txId, call.branch]);
}

export const pointsReservation: ReservationHandlers<PointsRequest, { held: number }> = {
  try: holdPoints,
  confirm: spendHold,
  cancel: (tx, _p, call) => releaseHold(tx, call),
};
