import type { ShopView } from './shop-view.ts';
import type { InboxRow, MessagingSnapshot, ShopDatabase, Subscription } from './snapshot.ts';
import { SHOP_DATABASES } from './snapshot.ts';

/** One subscription of one service, with its producer's messaging tables (when the producer is one of ours). */
export interface Feed {
  subscriber: ShopDatabase;
  subscription: Subscription;
  producer: MessagingSnapshot | undefined;
  inbox: InboxRow[];
}

/** Every subscription in the shop (e.g. orders-from-customers, loyalty-from-customers). */
export function feedsOf(view: ShopView): Feed[] {
  const feeds: Feed[] = [];
  for (const subscriber of SHOP_DATABASES) {
    const messaging = view.snapshot.messaging[subscriber];
    for (const subscription of messaging.subscriptions) {
      const source = subscription.source as ShopDatabase;
      feeds.push({
        subscriber,
        subscription,
        producer: SHOP_DATABASES.includes(source) ? view.snapshot.messaging[source] : undefined,
        inbox: messaging.inbox.filter((row) => row.subscription === subscription.name),
      });
    }
  }
  return feeds;
}

/** Whether a subscription takes events of this type (no types: all). */
export function takes(subscription: Subscription, type: string): boolean {
  return subscription.types.length === 0 || subscription.types.includes(type);
}
