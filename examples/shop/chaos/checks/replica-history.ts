import { Anomalies, type CheckResult } from './anomalies.ts';
import type { ShopView } from './shop-view.ts';

/**
 * No replica row ever moved back: judged over every write Baton made to a
 * referrer's replica during the run (the audit trigger's rows,
 * replica-audit.ts), not only the final state — a replica that went back
 * and was put forward again by a later event ends equal to its owner, yet
 * for a while it held a state the owner had already left (an order could be
 * placed for a customer already deleted, a policy applied twice).
 *
 * - version-moved-back  an UPDATE wrote a lower version than the row held;
 * - came-back-to-life   a DELETED row became ACTIVE (or DELETING) at a version
 *                       not above the tombstone's: only a newer version may
 *                       re-create an id.
 *
 * Hand tampering (triggers off) is not in the audit: it is the harness's doing.
 */
export function replicasNeverMovedBack(view: ShopView): CheckResult {
  const found = new Anomalies('replicas-never-moved-back');
  for (const referrer of ['orders', 'loyalty'] as const) {
    const audit = view.snapshot[referrer].replicaAudit;
    view.stats[`replicaAudit.${referrer}.updates`] = audit.length;
    for (const write of audit) {
      const where = {
        referrer,
        id: write.id,
        from: `${write.old.state} v${write.old.version}`,
        to: `${write.new.state} v${write.new.version}`,
        at: write.at.toISOString(),
      };
      if (write.new.version < write.old.version) found.add('version-moved-back', where);
      else if (
        write.old.state === 'DELETED' &&
        write.new.state !== 'DELETED' &&
        write.new.version <= write.old.version
      )
        found.add('came-back-to-life', where);
    }
  }
  return found.result();
}
