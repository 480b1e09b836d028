import { Anomalies, type CheckResult } from './anomalies.ts';
import { num, type ShopView, TERMINAL_SAGA_STATES, text } from './shop-view.ts';
import type { SagaRow } from './snapshot.ts';

/**
 * Every saga terminal and consistent with what it did:
 *
 * - no saga running, completing, compensating or stuck;
 * - place-order completed ⇒ its order is placed (or cancelled by a completed
 *   cancel-order), and, for points > 0, a spend movement `spend:<saga id>` of
 *   −points for its customer exists (at most one: the duplicate check);
 * - place-order compensated ⇒ its order is rejected (or was never created:
 *   the customer was unknown) and no spend movement exists (holds: the
 *   reservation check);
 * - cancel-order completed ⇒ the order is cancelled and, for points > 0, a
 *   refund movement `refund:<order id>` of +points exists; compensated ⇒
 *   the order is not cancelled and nothing was refunded;
 * - every order row has its place saga, agrees with its input, and its
 *   state matches the sagas' outcomes (no order left pending).
 *
 * A customer loyalty has deleted (replica not ACTIVE) had its movements
 * removed by the cascade: their spends and refunds cannot be checked and are
 * skipped (counted in stats). So is a customer that may have been deleted and
 * registered again (its movements belong to two lives).
 */
export function sagasTerminalAndConsistent(view: ShopView): CheckResult {
  const found = new Anomalies('sagas-terminal-and-consistent');
  for (const saga of view.sagas.values()) {
    view.count(`sagas.${saga.name}.${saga.state}`);
    if (!TERMINAL_SAGA_STATES.has(saga.state)) {
      found.add('saga-not-terminal', { saga: saga.id, state: saga.state, error: saga.error });
      continue;
    }
    if (saga.name === 'place-order') checkPlace(view, found, saga);
    else if (saga.name === 'cancel-order') checkCancel(view, found, saga);
  }
  checkOrders(view, found);
  return found.result();
}

function pointsCheckable(view: ShopView, customerId: string | undefined): boolean {
  const ok =
    customerId !== undefined &&
    view.loyaltyKnows(customerId) &&
    !view.history.mayBeReincarnated(customerId);
  if (!ok) view.count('sagas.pointsSkippedCustomerDeleted');
  return ok;
}

function checkPlace(view: ShopView, found: Anomalies, saga: SagaRow): void {
  const orderId = text(saga.input.orderId);
  const customerId = text(saga.input.customerId);
  const points = num(saga.input.points) ?? 0;
  const order = orderId === undefined ? undefined : view.orders.get(orderId);
  const spends = view.movements(`spend:${saga.id}`);
  const where = { saga: saga.id, state: saga.state, customerId, points };
  if (saga.state === 'completed') {
    if (order?.state !== 'placed' && order?.state !== 'cancelled')
      found.add('completed-place-order-not-placed', { ...where, order: order?.state ?? 'none' });
    if (!pointsCheckable(view, customerId)) return;
    if (points > 0 && spends.length === 0) found.add('completed-place-order-without-spend', where);
    for (const spend of spends)
      if (spend.points !== -points || spend.customerId !== customerId)
        found.add('spend-differs-from-order', { ...where, spend });
    if (points === 0 && spends.length > 0) found.add('spend-for-zero-points', { ...where, spends });
    return;
  }
  if (order && order.state !== 'rejected')
    found.add('compensated-place-order-not-rejected', { ...where, order: order.state });
  if (spends.length > 0) found.add('compensated-place-order-spent', { ...where, spends });
}

function checkCancel(view: ShopView, found: Anomalies, saga: SagaRow): void {
  const orderId = text(saga.input.orderId) ?? '';
  const order = view.orders.get(orderId);
  const refunds = view.movements(`refund:${orderId}`);
  const where = { saga: saga.id, state: saga.state, order: order?.state ?? 'none' };
  if (saga.state === 'compensated') {
    if (order?.state === 'cancelled') found.add('compensated-cancel-order-cancelled', where);
    if (refunds.length > 0) found.add('compensated-cancel-order-refunded', { ...where, refunds });
    return;
  }
  if (order?.state !== 'cancelled') found.add('completed-cancel-order-not-cancelled', where);
  if (!order || !pointsCheckable(view, order.customerId ?? undefined)) return;
  const expected = order.points;
  if (expected > 0 && !refunds.some((m) => m.points === expected))
    found.add('completed-cancel-order-without-refund', { ...where, points: expected, refunds });
  if (expected === 0 && refunds.length > 0)
    found.add('refund-for-zero-points', { ...where, refunds });
}

function checkOrders(view: ShopView, found: Anomalies): void {
  for (const order of view.orders.values()) {
    view.count(`orders.${order.state}`);
    const place = view.sagas.get(`place:${order.id}`);
    const cancel = view.sagas.get(`cancel:${order.id}`);
    const where = { order: order.id, state: order.state };
    if (!place) {
      found.add('order-without-place-saga', where);
      continue;
    }
    if (
      !TERMINAL_SAGA_STATES.has(place.state) ||
      (cancel && !TERMINAL_SAGA_STATES.has(cancel.state))
    )
      continue; // reported as a saga not terminal
    if (place.input.customerId !== order.customerId || place.input.points !== order.points)
      found.add('order-differs-from-its-saga', {
        ...where,
        order: { customerId: order.customerId, points: order.points },
        saga: place.input,
      });
    const expected =
      place.state === 'compensated'
        ? 'rejected'
        : cancel?.state === 'completed'
          ? 'cancelled'
          : 'placed';
    if (order.state !== expected)
      found.add('order-state-differs-from-sagas', {
        ...where,
        expected,
        place: place.state,
        cancel: cancel?.state ?? 'none',
      });
  }
}
