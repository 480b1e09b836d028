import { Anomalies, type CheckResult } from './anomalies.ts';
import { groupBy, type ShopView } from './shop-view.ts';
import { feedsOf } from './subscriptions.ts';

/**
 * Per-key event order: in each subscription's inbox, the handled events of
 * one key, in inbox id order (the order they were received and handled in),
 * have strictly increasing versions — whichever source wrote them: the
 * entity's state events (`baton.entity.*`, from the capture trigger) and the
 * events the service publishes itself on the same key count on one counter.
 * A repeated event id counts once (the duplicate check reports repeats).
 */
export function perKeyEventOrder(view: ShopView): CheckResult {
  const found = new Anomalies('per-key-event-order');
  for (const feed of feedsOf(view)) {
    const handled = feed.inbox.filter((r) => r.status === 'handled' && r.version !== null);
    for (const [key, rows] of groupBy(handled, (r) => r.key)) {
      const seen = new Set<string>();
      let previous: (typeof rows)[number] | undefined;
      for (const row of [...rows].sort((a, b) => a.id - b.id)) {
        if (row.eventId) {
          if (seen.has(row.eventId)) continue;
          seen.add(row.eventId);
        }
        if (previous && row.version! <= previous.version!)
          found.add('out-of-order', {
            subscription: feed.subscription.name,
            key,
            earlier: { inboxId: previous.id, version: previous.version, type: previous.type },
            later: { inboxId: row.id, version: row.version, type: row.type },
          });
        previous = row;
      }
    }
  }
  return found.result();
}
