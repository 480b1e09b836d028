import type { Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';

export type BarrierOp = 'try' | 'confirm' | 'cancel';

/** What the barrier decided for one call, before the business function runs. */
export type BarrierDecision =
  /** First time: run the business function (in this same transaction). */
  | { run: true }
  /** A repeat: do nothing; answer as the first time did. */
  | { run: false; reason: 'duplicate'; result: unknown }
  /** A try after its cancel (it arrived late): refuse it. */
  | { run: false; reason: 'cancelled-before-try'; result: null }
  /** A cancel whose try never ran: nothing to undo (recorded, so the late try is refused). */
  | { run: false; reason: 'null-compensation'; result: null }
  /** A confirm whose try never ran: refuse (nothing was reserved). */
  | { run: false; reason: 'no-try'; result: null }
  /** A confirm after its cancel (a late or stray confirm): refuse (the reservation is gone). */
  | { run: false; reason: 'cancelled'; result: null };

/**
 * One branch's barrier scope: the calling service ('' when unknown: shared
 * auth), the resource, the saga's transaction and its branch.
 */
export interface BarrierCall {
  caller: string;
  resource: string;
  txId: string;
  branch: string;
}

/** The WHERE of one barrier row of `call` (parameters $1 caller, $2 resource, $3 tx, $4 branch). */
const ROW = 'caller = $1 AND resource = $2 AND tx_id = $3 AND branch = $4';

/**
 * The barrier that makes try / confirm / cancel safe against duplicate,
 * late and out-of-order calls (after DTM's sub-transaction barrier). It runs
 * in the participant's business transaction under READ COMMITTED: each call
 * first inserts its own (caller, resource, tx, branch, op) row — a duplicate finds it taken.
 * A cancel also inserts the try's row, marked `blocked`: if that succeeds
 * the try never ran (null compensation), and a try arriving later finds its
 * row taken and is refused. Two concurrent calls on one row serialise on the
 * unique index: the second waits for the first to commit or roll back.
 */
export async function passBarrier(
  tx: Executor,
  schemaSql: string,
  call: BarrierCall & { op: BarrierOp },
): Promise<BarrierDecision> {
  if (call.op === 'confirm') return passConfirm(tx, schemaSql, call);
  const mine = await insertRow(tx, schemaSql, call, call.op, 'done');
  if (!mine) {
    const existing = await readRow(tx, schemaSql, call, call.op);
    if (call.op === 'try' && existing?.outcome === 'blocked') {
      return { run: false, reason: 'cancelled-before-try', result: null };
    }
    return { run: false, reason: 'duplicate', result: existing?.result ?? null };
  }
  if (call.op === 'try') return { run: true };
  // cancel: claim the try's row first; if we get it, the try never ran.
  const blocked = await insertRow(tx, schemaSql, call, 'try', 'blocked');
  if (blocked) {
    await queryPrepared(
      tx,
      `UPDATE ${schemaSql}.barrier SET outcome = 'null',
         seal = ${schemaSql}.barrier_seal(tx_id, branch, op, resource, 'null', result, caller)
       WHERE ${ROW} AND op = 'cancel'`,
      [call.caller, call.resource, call.txId, call.branch],
    );
    return { run: false, reason: 'null-compensation', result: null };
  }
  const tried = await readRow(tx, schemaSql, call, 'try');
  if (tried?.outcome === 'blocked')
    return { run: false, reason: 'null-compensation', result: null };
  return { run: true };
}

/**
 * A confirm in one statement (it is on every saga's path): insert its row and,
 * in the same statement, read whether its try ran and whether a cancel came.
 * The reads see what committed before the statement began — as separate
 * statements after the insert would, but for a row committing in between:
 * the try committed before its answer reached the saga, so before the
 * confirm was sent.
 */
async function passConfirm(
  tx: Executor,
  schemaSql: string,
  call: BarrierCall,
): Promise<BarrierDecision> {
  const r = await queryPrepared<{ mine: boolean; try_outcome: string | null; cancelled: boolean }>(
    tx,
    `WITH mine AS (
       INSERT INTO ${schemaSql}.barrier (caller, resource, tx_id, branch, op, outcome, seal)
       VALUES ($1, $2, $3, $4, 'confirm', 'done', ${schemaSql}.barrier_seal($3, $4, 'confirm', $2, 'done', NULL, $1))
       ON CONFLICT (caller, resource, tx_id, branch, op) DO NOTHING RETURNING 1)
     SELECT EXISTS (SELECT 1 FROM mine) AS mine,
       (SELECT outcome FROM ${schemaSql}.barrier WHERE ${ROW} AND op = 'try') AS try_outcome,
       EXISTS (SELECT 1 FROM ${schemaSql}.barrier WHERE ${ROW} AND op = 'cancel') AS cancelled`,
    [call.caller, call.resource, call.txId, call.branch],
  );
  const row = r.rows[0];
  if (!row?.mine) {
    const existing = await readRow(tx, schemaSql, call, 'confirm');
    return { run: false, reason: 'duplicate', result: existing?.result ?? null };
  }
  if (row.try_outcome === null || row.try_outcome === 'blocked')
    return { run: false, reason: 'no-try', result: null };
  // Confirming a cancelled reservation would take what was released (e.g. charge points).
  if (row.cancelled) return { run: false, reason: 'cancelled', result: null };
  return { run: true };
}

/** Stores the business function's result with the call's barrier row (returned to duplicates). */
export async function recordBarrierResult(
  tx: Executor,
  schemaSql: string,
  call: BarrierCall & { op: BarrierOp },
  result: unknown,
): Promise<void> {
  await queryPrepared(
    tx,
    `UPDATE ${schemaSql}.barrier SET result = $6,
       seal = ${schemaSql}.barrier_seal(tx_id, branch, op, resource, outcome, $6::jsonb, caller)
     WHERE ${ROW} AND op = $5`,
    [call.caller, call.resource, call.txId, call.branch, call.op, JSON.stringify(result ?? null)],
  );
}

/** Deletes barrier rows older than `retentionMs` (keep them longer than any redelivery can arrive). */
export async function pruneBarrier(
  tx: Executor,
  schemaSql: string,
  retentionMs: number,
): Promise<number> {
  const r = await queryPrepared(
    tx,
    `DELETE FROM ${schemaSql}.barrier WHERE created_at < now() - make_interval(secs => $1::double precision / 1000)`,
    [retentionMs],
  );
  return r.rowCount ?? 0;
}

async function insertRow(
  tx: Executor,
  schemaSql: string,
  call: BarrierCall,
  op: BarrierOp,
  outcome: 'done' | 'blocked',
): Promise<boolean> {
  const r = await queryPrepared(
    tx,
    `INSERT INTO ${schemaSql}.barrier (caller, resource, tx_id, branch, op, outcome, seal)
     VALUES ($1, $2, $3, $4, $5, $6, ${schemaSql}.barrier_seal($3, $4, $5, $2, $6, NULL, $1))
     ON CONFLICT (caller, resource, tx_id, branch, op) DO NOTHING`,
    [call.caller, call.resource, call.txId, call.branch, op, outcome],
  );
  return r.rowCount === 1;
}

async function readRow(
  tx: Executor,
  schemaSql: string,
  call: BarrierCall,
  op: BarrierOp,
): Promise<{ outcome: string; result: unknown } | undefined> {
  const r = await queryPrepared<{ outcome: string; result: unknown }>(
    tx,
    `SELECT outcome, result FROM ${schemaSql}.barrier WHERE ${ROW} AND op = $5`,
    [call.caller, call.resource, call.txId, call.branch, op],
  );
  return r.rows[0];
}
