import { WELCOME_POINTS } from '../../config.ts';
import { Anomalies, type CheckResult } from './anomalies.ts';
import { argNumber, argText } from './history-index.ts';
import { type ShopView, TERMINAL_SAGA_STATES } from './shop-view.ts';

/**
 * Balances add up, two ways:
 *
 * 1. Ledger: every account's balance = Σ of its movements, and ≥ 0; no
 *    movement of a customer loyalty knows without an account.
 * 2. Model: for every customer that exists at the owner (customers),
 *      balance = WELCOME (100)
 *              − Σ points of its place commands whose saga completed
 *              + Σ points of the orders whose cancel saga completed,
 *    where the commands are the history's place / cancel entries with
 *    outcome ok or unknown (one per order id), the points are those the
 *    history sent, and "completed" is the saga's state in the orders
 *    database: the history says what was asked, the databases say which
 *    of the uncertain ones happened. A fail took no effect (the durability
 *    check enforces it). An existing customer must have an account.
 *    Skipped (counted in stats): customers with a saga not yet terminal
 *    (either outcome is possible; the saga check reports it), and customers
 *    that may have been deleted and registered again (two lives, one id).
 */
export function balancesAddUp(view: ShopView): CheckResult {
  const found = new Anomalies('balances-add-up');
  checkLedger(view, found);
  checkModel(view, found);
  return found.result();
}

function checkLedger(view: ShopView, found: Anomalies): void {
  const sums = new Map<string, number>();
  for (const m of view.snapshot.loyalty.movements)
    sums.set(m.customerId, (sums.get(m.customerId) ?? 0) + m.points);
  for (const [customerId, balance] of view.accounts) {
    const sum = sums.get(customerId) ?? 0;
    if (balance !== sum) found.add('balance-not-sum-of-movements', { customerId, balance, sum });
    if (balance < 0) found.add('negative-balance', { customerId, balance });
  }
  for (const [customerId, sum] of sums)
    if (!view.accounts.has(customerId) && view.loyaltyKnows(customerId))
      found.add('movements-without-account', { customerId, sum });
}

function checkModel(view: ShopView, found: Anomalies): void {
  const model = new Map<
    string,
    { expected: number; spent: string[]; refunded: string[]; open: boolean }
  >();
  const of = (customerId: string) => {
    const known = model.get(customerId);
    if (known) return known;
    const fresh = {
      expected: WELCOME_POINTS,
      spent: [] as string[],
      refunded: [] as string[],
      open: false,
    };
    model.set(customerId, fresh);
    return fresh;
  };
  const placed = new Map<string, { customerId: string; points: number }>();
  for (const entry of view.history.entries) {
    if (entry.op !== 'place' || entry.outcome === 'fail') continue;
    const id = argText(entry, 'id');
    const customerId = argText(entry, 'customerId');
    const points = argNumber(entry, 'points');
    if (!id || !customerId || points === undefined || placed.has(id)) continue;
    placed.set(id, { customerId, points });
    const saga = view.sagas.get(`place:${id}`);
    if (!saga) continue; // an unknown command that did not happen
    const m = of(customerId);
    if (!TERMINAL_SAGA_STATES.has(saga.state)) m.open = true;
    if (saga.state === 'completed') {
      m.expected -= points;
      m.spent.push(id);
    }
  }
  const cancelled = new Set<string>();
  for (const entry of view.history.entries) {
    if (entry.op !== 'cancel' || entry.outcome === 'fail') continue;
    const orderId = argText(entry, 'orderId');
    const order = orderId === undefined ? undefined : placed.get(orderId);
    if (!orderId || !order || cancelled.has(orderId)) continue;
    cancelled.add(orderId);
    const saga = view.sagas.get(`cancel:${orderId}`);
    if (!saga) continue;
    const m = of(order.customerId);
    if (!TERMINAL_SAGA_STATES.has(saga.state)) m.open = true;
    if (saga.state === 'completed') {
      m.expected += order.points;
      m.refunded.push(orderId);
    }
  }
  for (const customerId of view.customers.keys()) {
    const m = of(customerId);
    if (m.open) {
      view.count('balances.modelSkippedOpenSaga');
      continue;
    }
    if (view.history.mayBeReincarnated(customerId)) {
      view.count('balances.modelSkippedReregistered');
      continue;
    }
    view.count('balances.modelCompared');
    const balance = view.accounts.get(customerId);
    if (balance === undefined) found.add('account-missing', { customerId, expected: m.expected });
    else if (balance !== m.expected)
      found.add('balance-differs-from-model', {
        customerId,
        balance,
        expected: m.expected,
        spentBy: m.spent,
        refundedFor: m.refunded,
      });
  }
}
