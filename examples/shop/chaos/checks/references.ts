import { Anomalies, type CheckResult } from './anomalies.ts';
import type { ShopView } from './shop-view.ts';

/**
 * No row referencing a missing customer:
 * - orders (`keep`): every `customer_id` has a row in the orders replica; a
 *   DELETED customer's orders carry the snapshot (customer_name set);
 * - loyalty (`cascade`): accounts, movements and holds only for customers the
 *   loyalty replica holds ACTIVE — a DELETED one means the cascade was not
 *   applied, no replica row means a reference nobody checked.
 */
export function noReferenceToMissingCustomer(view: ShopView): CheckResult {
  const found = new Anomalies('no-reference-to-missing-customer');
  for (const order of view.orders.values()) {
    if (order.customerId === null) continue;
    const replica = view.ordersReplica.get(order.customerId);
    if (!replica)
      found.add('order-customer-unknown', { order: order.id, customerId: order.customerId });
    else if (replica.state === 'DELETED' && order.customerName === null)
      found.add('kept-order-without-snapshot', { order: order.id, customerId: order.customerId });
  }
  const { accounts, movements, holds } = view.snapshot.loyalty;
  const loyaltyRows = [
    ...accounts.map((a) => ({ table: 'accounts', customerId: a.customerId })),
    ...movements.map((m) => ({
      table: 'movements',
      customerId: m.customerId,
      reference: m.reference,
    })),
    ...holds.map((h) => ({ table: 'holds', customerId: h.customerId, txId: h.txId })),
  ];
  for (const row of loyaltyRows) {
    const replica = view.loyaltyReplica.get(row.customerId);
    if (!replica) found.add('loyalty-row-customer-unknown', row);
    else if (replica.state === 'DELETED') found.add('cascade-not-applied', row);
  }
  return found.result();
}
