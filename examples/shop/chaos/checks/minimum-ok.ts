import { type HistoryEntry, OPERATIONS, type Operation } from '../history.ts';
import { Anomalies, type CheckResult } from './anomalies.ts';
import { subjectOf } from './history-index.ts';
import type { ShopView } from './shop-view.ts';

/**
 * A minimum of successful operations per type, so that a run where
 * everything failed (or timed out) cannot pass. Successful: an `ok` answer;
 * for place and cancel also a completed saga (an accepted order that was
 * then rejected did not succeed). Default minimum: 1 for every operation the
 * history contains, and an empty history fails.
 */
export function minimumSuccessfulOperations(
  view: ShopView,
  minimumOk: Partial<Record<Operation, number>> | undefined,
): CheckResult {
  const found = new Anomalies('minimum-successful-operations');
  const entries = view.history.entries;
  if (entries.length === 0) found.add('empty-history', {});
  for (const op of OPERATIONS) {
    const ofOp = entries.filter((e) => e.op === op);
    const succeeded = ofOp.filter((e) => succeededFully(view, e)).length;
    view.stats[`history.${op}.succeeded`] = succeeded;
    for (const outcome of ['ok', 'fail', 'unknown'] as const)
      view.stats[`history.${op}.${outcome}`] = ofOp.filter((e) => e.outcome === outcome).length;
    const required = minimumOk?.[op] ?? (ofOp.length > 0 ? 1 : 0);
    if (succeeded < required)
      found.add('too-few-successes', { op, succeeded, required, sent: ofOp.length });
  }
  return found.result();
}

function succeededFully(view: ShopView, entry: HistoryEntry): boolean {
  if (entry.outcome !== 'ok') return false;
  const id = subjectOf(entry);
  if (entry.op === 'place') return view.sagas.get(`place:${id}`)?.state === 'completed';
  if (entry.op === 'cancel') return view.sagas.get(`cancel:${id}`)?.state === 'completed';
  return true;
}
