import type { Executor } from '../../src/db/executor.ts';
import { TerminalError } from '../../src/index.ts';
import type { ReservationHandlers } from '../../src/sagas/participant.ts';

/** Test fixture: a loyalty service's `points` reservation over real tables. */
export const LOYALTY_TABLES = `
  CREATE TABLE accounts (customer_id text PRIMARY KEY, balance int NOT NULL);
  CREATE TABLE holds (tx_id text, branch text, customer_id text, points int NOT NULL, PRIMARY KEY (tx_id, branch));
  CREATE TABLE movements (id serial PRIMARY KEY, customer_id text, points int NOT NULL, tx_id text, branch text);
`;

export interface PointsPayload {
  customerId: string;
  points: number;
}

export const pointsReservation: ReservationHandlers<PointsPayload, { held: number }> = {
  async try(tx: Executor, p, call) {
    const r = await tx.query<{ available: number }>(
      `SELECT a.balance - coalesce((SELECT sum(points) FROM holds h WHERE h.customer_id = a.customer_id), 0) AS available
       FROM accounts a WHERE customer_id = $1 FOR UPDATE`,
      [p.customerId],
    );
    const available = Number(r.rows[0]?.available ?? -1);
    if (available < p.points)
      throw new TerminalError(
        `customer ${p.customerId} has ${Math.max(0, available)} points available, ${p.points} asked`,
      );
    await tx.query('INSERT INTO holds VALUES ($1, $2, $3, $4)', [
      call.txId,
      call.branch,
      p.customerId,
      p.points,
    ]);
    return { held: p.points };
  },
  async confirm(tx, p, call) {
    const hold = await tx.query<{ points: number }>(
      'DELETE FROM holds WHERE tx_id = $1 AND branch = $2 RETURNING points',
      [call.txId, call.branch],
    );
    const points = hold.rows[0]?.points ?? p.points;
    await tx.query('UPDATE accounts SET balance = balance - $2 WHERE customer_id = $1', [
      p.customerId,
      points,
    ]);
    await tx.query(
      'INSERT INTO movements (customer_id, points, tx_id, branch) VALUES ($1, $2, $3, $4)',
      [p.customerId, -points, call.txId, call.branch],
    );
  },
  async cancel(tx, _p, call) {
    await tx.query('DELETE FROM holds WHERE tx_id = $1 AND branch = $2', [call.txId, call.branch]);
  },
};
