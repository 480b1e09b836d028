import type { HistoryEntry } from '../history.ts';
import { Anomalies, type CheckResult } from './anomalies.ts';
import type { ShopView } from './shop-view.ts';
import { feedsOf } from './subscriptions.ts';

/**
 * What the harness tells the checker about the bad input it sent.
 * `sent`: malformed, oversized, unknown and hostile inputs tried;
 * `unexpected5xx`: how many of them were answered with a 5xx (a crash or an
 * unhandled error: never acceptable for bad input);
 * `expectedDeadLetters`: dead letters the harness caused on purpose (e.g.
 * garbage lines injected into a feed by the fault proxy); default 0.
 */
export interface BadInputReport {
  sent: number;
  unexpected5xx: number;
  expectedDeadLetters?: number;
}

/**
 * Bad input contained: the shop answered bad input without a 5xx, no real
 * event (one its producer's outbox holds) became a dead letter, at most the
 * expected number of other dead letters exist (undecodable or forged
 * lines), and the history classified answers honestly — an `ok` is a 2xx
 * and a 5xx is never a `fail` (it may have happened: `unknown`).
 */
export function badInputContained(view: ShopView, report: BadInputReport | undefined): CheckResult {
  const found = new Anomalies('bad-input-contained');
  view.stats['badInput.sent'] = report?.sent ?? 0;
  if (report && report.unexpected5xx > 0)
    found.add('bad-input-answered-5xx', { count: report.unexpected5xx, sent: report.sent });
  let otherDead = 0;
  const examples: unknown[] = [];
  for (const feed of feedsOf(view)) {
    const produced = new Set(feed.producer?.outbox.map((e) => e.eventId));
    for (const row of feed.inbox) {
      if (row.status !== 'dead' && row.status !== 'discarded') continue;
      const where = {
        subscription: feed.subscription.name,
        inboxId: row.id,
        status: row.status,
        type: row.type,
        key: row.key,
        lastError: row.lastError?.slice(0, 200),
      };
      if (row.eventId && produced.has(row.eventId))
        found.add('real-event-dead', { ...where, eventId: row.eventId });
      else {
        otherDead++;
        if (examples.length < 3) examples.push(where);
      }
    }
  }
  view.stats['badInput.deadLetters'] = otherDead;
  const allowed = report?.expectedDeadLetters ?? 0;
  if (otherDead > allowed)
    found.add('unexpected-dead-letters', { count: otherDead, allowed, examples });
  for (const entry of view.history.entries) {
    const problem = misclassified(entry);
    if (problem)
      found.add('outcome-misclassified', {
        seq: entry.seq,
        op: entry.op,
        outcome: entry.outcome,
        status: entry.status,
        problem,
      });
  }
  return found.result();
}

function misclassified(entry: HistoryEntry): string | undefined {
  const s = entry.status;
  if (entry.outcome === 'ok' && (s === undefined || s < 200 || s >= 300)) return 'ok without a 2xx';
  if (entry.outcome === 'fail' && (s === undefined || s >= 500))
    return 'a 5xx or no answer recorded as fail';
  return undefined;
}
