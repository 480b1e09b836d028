import { Anomalies, type CheckResult } from './anomalies.ts';
import type { ShopView } from './shop-view.ts';
import { feedsOf } from './subscriptions.ts';

/**
 * No unexpected events: every event in an inbox exists in its producer's
 * outbox, with the same type, key and version. An event the producer has
 * pruned (its position at or below `pruned_through`) cannot be compared and
 * is skipped. Entries without an event id are undecodable lines (dead on
 * arrival): the bad-input check counts those.
 */
export function noUnexpectedEvents(view: ShopView): CheckResult {
  const found = new Anomalies('no-unexpected-events');
  for (const feed of feedsOf(view)) {
    if (!feed.producer) continue;
    const produced = new Map(feed.producer.outbox.map((e) => [e.eventId, e]));
    for (const row of feed.inbox) {
      if (!row.eventId) continue;
      const where = { subscription: feed.subscription.name, inboxId: row.id, eventId: row.eventId };
      const event = produced.get(row.eventId);
      if (!event) {
        const position = Number(row.position);
        if (Number.isFinite(position) && position <= feed.producer.prunedThrough)
          view.count('events.skippedPrunedAtProducer');
        else
          found.add('not-produced', {
            ...where,
            type: row.type,
            key: row.key,
            version: row.version,
          });
        continue;
      }
      if (event.type !== row.type || event.key !== row.key || event.version !== row.version)
        found.add('altered', {
          ...where,
          produced: { type: event.type, key: event.key, version: event.version },
          received: { type: row.type, key: row.key, version: row.version },
        });
    }
  }
  return found.result();
}
