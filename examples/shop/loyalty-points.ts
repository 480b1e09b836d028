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
export async function spendHold(tx: Executor, p: PointsRequest, call: Branch): Promise<void> {
  const hold = await tx.query<{ points: number }>(
    'DELETE FROM holds WHERE tx_id = $1 AND branch = $2 RETURNING points',
    [call.txId, call.branch],
  );
  const points = hold.rows[0]?.points;
  if (points === undefined) return;
  await tx.query('UPDATE accounts SET balance = balance - $2 WHERE customer_id = $1', [
    p.customerId,
    points,
  ]);
  await tx.query(
    "INSERT INTO movements (customer_id, points, kind, reference) VALUES ($1, $2, 'spend', $3)",
    [p.customerId, -points, `spend:${call.txId}`],
  );
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
