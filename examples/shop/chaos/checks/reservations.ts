import { Anomalies, type CheckResult } from './anomalies.ts';
import { groupBy, type ShopView } from './shop-view.ts';

/**
 * No reservation left in try:
 * - loyalty's `holds` is empty (a hold is points tried and neither confirmed
 *   nor cancelled);
 * - every barrier `try` that ran (outcome done) has its confirm or cancel
 *   (barrier rows are pruned after their retention; a pruned try is gone
 *   with its partner, so only present rows are compared);
 * - every reserve step of a finished saga was settled: confirmed in a
 *   completed saga, compensated (or failed) in a compensated one.
 */
export function noReservationLeftInTry(view: ShopView): CheckResult {
  const found = new Anomalies('no-reservation-left-in-try');
  for (const hold of view.snapshot.loyalty.holds) found.add('hold-left', { ...hold });
  const branches = groupBy(view.snapshot.loyalty.barrier, (b) => `${b.txId}\u0000${b.branch}`);
  for (const rows of branches.values()) {
    const tried = rows.find((r) => r.op === 'try' && r.outcome === 'done');
    if (tried && !rows.some((r) => r.op === 'confirm' || r.op === 'cancel'))
      found.add('try-without-confirm-or-cancel', {
        txId: tried.txId,
        branch: tried.branch,
        resource: tried.resource,
      });
  }
  for (const step of view.snapshot.orders.steps) {
    if (step.kind !== 'reserve') continue;
    const saga = view.sagas.get(step.sagaId);
    const settled =
      saga?.state === 'completed'
        ? ['confirmed']
        : saga?.state === 'compensated'
          ? ['compensated', 'failed']
          : undefined; // not finished: the saga check reports it
    if (settled && !settled.includes(step.state))
      found.add('reserve-step-not-settled', {
        saga: step.sagaId,
        step: step.name,
        sagaState: saga?.state,
        stepState: step.state,
      });
  }
  return found.result();
}
