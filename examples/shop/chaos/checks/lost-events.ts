import { Anomalies, type CheckResult } from './anomalies.ts';
import type { ShopView } from './shop-view.ts';
import { feedsOf, takes } from './subscriptions.ts';

/** Baton's default inbox retention: handled entries older than this may be pruned. */
export const DEFAULT_INBOX_RETENTION_MS = 7 * 24 * 3600_000;

/**
 * No lost events: every event a producer's outbox still holds and a
 * subscription takes reached that subscription's inbox, and was handled.
 *
 * Only outbox rows still present can be compared (the relay prunes relayed
 * rows after its retention; `relay_state.pruned_through` says how far).
 * Events relayed longer ago than the inbox retention are skipped too: their
 * inbox entries may have been pruned. An event still unrelayed (seq NULL) on
 * a quiet shop is lost as well: the relay never handed it out.
 */
export function noLostEvents(
  view: ShopView,
  now: Date,
  inboxRetentionMs = DEFAULT_INBOX_RETENTION_MS,
): CheckResult {
  const found = new Anomalies('no-lost-events');
  const unrelayedSeen = new Set<string>();
  for (const feed of feedsOf(view)) {
    if (!feed.producer) continue;
    view.stats[`events.${feed.subscription.source}.prunedThrough`] = feed.producer.prunedThrough;
    const received = new Map(feed.inbox.filter((r) => r.eventId).map((r) => [r.eventId, r]));
    for (const event of feed.producer.outbox) {
      if (!takes(feed.subscription, event.type)) continue;
      const where = {
        subscription: feed.subscription.name,
        eventId: event.eventId,
        type: event.type,
        key: event.key,
        version: event.version,
      };
      if (event.seq === null) {
        if (!unrelayedSeen.has(event.eventId)) found.add('never-relayed', where);
        unrelayedSeen.add(event.eventId);
        continue;
      }
      if (event.relayedAt && now.getTime() - event.relayedAt.getTime() > inboxRetentionMs) {
        view.count('events.skippedOlderThanInboxRetention');
        continue;
      }
      view.count('events.compared');
      const row = received.get(event.eventId);
      if (!row) found.add('lost', { ...where, seq: event.seq });
      else if (row.status === 'pending')
        found.add('received-not-handled', { ...where, inboxId: row.id, attempts: row.attempts });
    }
  }
  return found.result();
}
