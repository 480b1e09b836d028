import { Anomalies, type CheckResult } from './anomalies.ts';
import type { ShopView } from './shop-view.ts';
import type { ReplicaRow } from './snapshot.ts';

const ENTITY_EVENT = 'baton.entity.customer';

/**
 * Replicas equal owners: the orders and loyalty replicas of customers agree
 * with the customers database.
 *
 * - a customer row ⇒ replica ACTIVE with the same name and address;
 * - a tombstone ⇒ replica DELETED;
 * - a replica row with neither ⇒ an orphan (the caretaker should have
 *   quarantined and removed it);
 * - version: exactly the version of the entity's latest state event (the
 *   owner's versions table); the last entity event in the outbox must carry
 *   the same version.
 */
export function replicasEqualOwners(view: ShopView): CheckResult {
  const found = new Anomalies('replicas-equal-owners');
  const lastEntityVersion = new Map<string, number>();
  for (const event of view.snapshot.messaging.customers.outbox)
    if (event.type === ENTITY_EVENT)
      lastEntityVersion.set(
        event.key,
        Math.max(lastEntityVersion.get(event.key) ?? 0, event.version),
      );
  const versionRange = (id: string): [number, number] => {
    const key = `customer:${id}`;
    const latest = view.snapshot.customers.entityVersions.get(key) ?? 0;
    return [lastEntityVersion.get(key) ?? latest, latest];
  };
  for (const [referrer, replica] of [
    ['orders', view.ordersReplica],
    ['loyalty', view.loyaltyReplica],
  ] as const) {
    const compare = (id: string, expectedState: string, row: ReplicaRow | undefined) => {
      const where = { referrer, id };
      if (!row) return found.add('replica-missing', { ...where, expectedState });
      if (row.state !== expectedState)
        return found.add('replica-state-differs', { ...where, expectedState, state: row.state });
      const [lower, upper] = versionRange(id);
      if (row.version < lower || row.version > upper)
        found.add('replica-version-differs', {
          ...where,
          version: row.version,
          expected: [lower, upper],
        });
    };
    for (const customer of view.customers.values()) {
      const row = replica.get(customer.id);
      compare(customer.id, 'ACTIVE', row);
      if (
        row?.state === 'ACTIVE' &&
        (row.fields.name !== customer.name || row.fields.address !== customer.address)
      )
        found.add('replica-fields-differ', {
          referrer,
          id: customer.id,
          owner: { name: customer.name, address: customer.address },
          replica: row.fields,
        });
    }
    for (const id of view.tombstones.keys())
      if (!view.customers.has(id)) compare(id, 'DELETED', replica.get(id));
    for (const row of replica.values())
      if (!view.customers.has(row.id) && !view.tombstones.has(row.id))
        found.add('replica-without-owner', { referrer, id: row.id, state: row.state });
    view.stats[`replicas.${referrer}`] = replica.size;
  }
  return found.result();
}
