import { Anomalies, type CheckResult } from './anomalies.ts';
import { groupBy, type ShopView } from './shop-view.ts';
import { feedsOf } from './subscriptions.ts';

const MOVEMENT_KINDS = ['welcome', 'spend', 'refund'] as const;

/**
 * No duplicate effects:
 * - each (subscription, event id) at most once in an inbox (a unique index
 *   enforces it; checked anyway: the checker must not trust what it checks);
 * - loyalty movements: references are unique and say what they are for —
 *   `welcome:<customer>`, `spend:<place saga id>`, `refund:<order id>` — so at
 *   most one welcome per customer, one spend per place saga, one refund per
 *   cancelled order; a reference that does not match its kind is reported;
 * - one order row per id, one saga per id, one account per customer.
 */
export function noDuplicateEffects(view: ShopView): CheckResult {
  const found = new Anomalies('no-duplicate-effects');
  for (const feed of feedsOf(view)) {
    const withIds = feed.inbox.filter((r) => r.eventId);
    for (const [eventId, rows] of groupBy(withIds, (r) => r.eventId))
      if (rows.length > 1)
        found.add('event-received-twice', {
          subscription: feed.subscription.name,
          eventId,
          inboxIds: rows.map((r) => r.id),
        });
  }
  for (const [reference, rows] of view.movementsByReference) {
    const [kind, target] = splitReference(reference);
    const mismatched = rows.filter((m) => m.kind !== kind);
    if (
      !MOVEMENT_KINDS.includes(kind as (typeof MOVEMENT_KINDS)[number]) ||
      !target ||
      mismatched.length
    )
      found.add('movement-reference-unexpected', { reference, kinds: rows.map((m) => m.kind) });
    if (rows.length > 1)
      found.add(`${kind}-booked-twice`, {
        reference,
        movements: rows.map((m) => ({ id: m.id, customerId: m.customerId, points: m.points })),
      });
  }
  const { orders, sagas } = view.snapshot.orders;
  for (const [id, rows] of groupBy(orders, (o) => o.id))
    if (rows.length > 1) found.add('order-twice', { id, rows: rows.length });
  for (const [id, rows] of groupBy(sagas, (s) => s.id))
    if (rows.length > 1) found.add('saga-twice', { id, rows: rows.length });
  for (const [id, rows] of groupBy(view.snapshot.loyalty.accounts, (a) => a.customerId))
    if (rows.length > 1) found.add('account-twice', { customerId: id, rows: rows.length });
  return found.result();
}

function splitReference(reference: string): [string, string] {
  const at = reference.indexOf(':');
  return at < 0 ? [reference, ''] : [reference.slice(0, at), reference.slice(at + 1)];
}
