import type { HistoryEntry } from '../history.ts';
import { Anomalies, type CheckResult } from './anomalies.ts';
import { argNumber, argText, subjectOf } from './history-index.ts';
import type { ShopView } from './shop-view.ts';

/**
 * Acknowledged commands are durable, refused ones had no effect, and no
 * effect exists that no command asked for:
 *
 * - register ok → the customer exists, or it has a tombstone and a delete
 *   (ok or unknown) may have come after it;
 * - place ok → its saga `place:<id>` exists with the acknowledged input, and
 *   its order row exists (unless the saga compensated before creating the
 *   row: a customer unknown to orders);
 * - cancel ok → its saga `cancel:<orderId>` exists;
 * - delete ok → the customer is gone, unless a register may have come after;
 * - update ok → the address is that of an update not overtaken by a later
 *   acknowledged one (or the customer was deleted after);
 * - fail (a 4xx answer) → no effect, when decidable: no customer / saga of
 *   that id unless another command on it may have taken effect;
 * - a customer or saga with no command of its id in the history at all is an
 *   effect without a cause.
 */
export function acknowledgedCommandsDurable(view: ShopView): CheckResult {
  const found = new Anomalies('acknowledged-commands-durable');
  for (const entry of view.history.entries) {
    const id = subjectOf(entry);
    if (id === undefined) continue;
    if (entry.outcome === 'ok') checkAcknowledged(view, found, entry, id);
    else if (entry.outcome === 'fail' && isClientError(entry.status))
      checkRefused(view, found, entry, id);
  }
  checkUpdates(view, found);
  for (const id of view.customers.keys())
    if (view.history.of('register', id).length === 0) found.add('customer-without-command', { id });
  for (const saga of view.sagas.values()) {
    const [kind, id] = splitSagaId(saga.id);
    const op = kind === 'place' ? 'place' : kind === 'cancel' ? 'cancel' : undefined;
    if (!op || id === undefined || view.history.of(op, id).length === 0)
      found.add('saga-without-command', { saga: saga.id, state: saga.state });
  }
  return found.result();
}

function checkAcknowledged(view: ShopView, found: Anomalies, e: HistoryEntry, id: string): void {
  const where = { seq: e.seq, op: e.op, id };
  switch (e.op) {
    case 'register': {
      if (view.customers.has(id)) return;
      const deletedLater = view.tombstones.has(id) && view.history.mayHaveFollowed('delete', id, e);
      if (!deletedLater)
        found.add('acknowledged-register-lost', { ...where, tombstone: view.tombstones.has(id) });
      return;
    }
    case 'place': {
      const saga = view.sagas.get(`place:${id}`);
      if (!saga) {
        found.add('acknowledged-place-lost', where);
        return;
      }
      const asked = { customerId: argText(e, 'customerId'), points: argNumber(e, 'points') };
      const stored = { customerId: saga.input.customerId, points: saga.input.points };
      if (asked.customerId !== stored.customerId || asked.points !== stored.points)
        found.add('place-stored-differently', { ...where, asked, stored });
      const createdNoRow =
        saga.state === 'compensated' &&
        !view.snapshot.orders.steps.some(
          (s) => s.sagaId === saga.id && s.name === 'create-order' && s.state !== 'failed',
        );
      if (!view.orders.has(id) && !createdNoRow)
        found.add('acknowledged-order-lost', { ...where, saga: saga.state });
      return;
    }
    case 'cancel':
      if (!view.sagas.has(`cancel:${id}`)) found.add('acknowledged-cancel-lost', where);
      return;
    case 'delete':
      if (view.customers.has(id) && !view.history.mayHaveFollowed('register', id, e))
        found.add('acknowledged-delete-lost', where);
      return;
    case 'update':
      return; // judged per customer, over all its updates (checkUpdates)
  }
}

function checkRefused(view: ShopView, found: Anomalies, e: HistoryEntry, id: string): void {
  const othersMay = view.history.mayHaveHappened(e.op, id).length > 0;
  if (othersMay) return;
  const where = { seq: e.seq, op: e.op, id, status: e.status };
  if (e.op === 'register' && view.customers.has(id))
    found.add('refused-command-took-effect', where);
  if (e.op === 'place' && view.sagas.has(`place:${id}`))
    found.add('refused-command-took-effect', where);
  if (e.op === 'cancel' && view.sagas.has(`cancel:${id}`))
    found.add('refused-command-took-effect', where);
}

/**
 * The address an existing customer ends with must come from an update that
 * may have taken effect and that no acknowledged update strictly followed
 * (last writer wins; concurrent ones may land in either order).
 */
function checkUpdates(view: ShopView, found: Anomalies): void {
  for (const [id, customer] of view.customers) {
    const acknowledged = view.history.of('update', id).filter((u) => u.outcome === 'ok');
    if (acknowledged.length === 0 || view.history.mayBeReincarnated(id)) continue;
    const candidates = view.history
      .mayHaveHappened('update', id)
      .filter((u) => !acknowledged.some((v) => v.startedAt > u.endedAt));
    const allowed = candidates.map((u) => argText(u, 'address'));
    if (!allowed.includes(customer.address))
      found.add('acknowledged-update-lost', { id, address: customer.address, allowed });
  }
}

function isClientError(status: number | undefined): boolean {
  return status !== undefined && status >= 400 && status < 500;
}

export function splitSagaId(id: string): [string, string | undefined] {
  const at = id.indexOf(':');
  return at < 0 ? [id, undefined] : [id.slice(0, at), id.slice(at + 1)];
}
