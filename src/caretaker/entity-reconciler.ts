import type { Database, Executor } from '../db/executor.ts';
import type { EntityLookup, EntityState } from '../references/definitions.ts';
import type { EntityReplication } from '../references/entity-replication.ts';
import type { OwnerClient } from '../references/owner-client.ts';
import { feedPositionOf } from '../transports/transport.ts';
import { classifyDifference, DIFFERENCE_CLASSES, type DifferenceClass } from './classify.ts';
import { httpSetSide } from './http-set-side.ts';
import { type ReconcileOptions, reconcileSets } from './set-reconciliation.ts';
import { sqlSetSide } from './sql-set-side.ts';

export interface EntityReconcileOptions {
  /** Apply repairs (otherwise report what would be done). */
  repair: boolean;
  /** Repair suspected true orphans now, without waiting for a second confirmation. */
  approve: boolean;
  /** How long to wait for the replica to catch up to the owner's watermark. */
  cutTimeoutMs: number;
  /** Examples kept per class. */
  examples: number;
  set?: ReconcileOptions;
}

export interface Finding {
  id: string;
  class: DifferenceClass;
  owner: { state: string; version: number };
  replica: { state: string; version: number } | null;
  action: string;
}

export interface EntityReport {
  entity: string;
  owner: string;
  cut: { watermark: string | null; replicaCursor: string | null; caughtUp: boolean };
  counts: Record<DifferenceClass, number>;
  examples: Finding[];
  repaired: number;
  quarantined: number;
  bytesExchanged: number;
  set: { levels: number; bucketsCompared: number; bucketsDiffering: number; ms: number };
  error?: string;
}

/**
 * Compares one replicated entity with its owner and repairs by policy:
 *
 * 1. Cut: read the owner's watermark and wait (bounded) until this service's
 *    subscription has read past it, with no state event of the entity left
 *    pending — then the replica *should* equal the owner.
 * 2. Set reconciliation of (id, version, fields) over hash buckets (traffic grows with
 *    the difference, not the table).
 * 3. Each difference is re-read by point reads on both sides and classified
 *    (classify.ts); only then is anything changed, one id per transaction.
 */
export class EntityReconciler {
  constructor(
    private readonly db: Database,
    private readonly schemaSql: string,
    private readonly replication: EntityReplication,
    private readonly owner: OwnerClient,
    private readonly subscription: string,
  ) {}

  async run(options: EntityReconcileOptions): Promise<EntityReport> {
    const entity = this.replication.replica.entity;
    const report = emptyEntityReport(entity, this.owner.name);
    report.cut = await this.waitForCut(options.cutTimeoutMs);
    const ownerSide = httpSetSide({
      client: this.owner.client,
      path: `sets/${encodeURIComponent(entity)}`,
    });
    const replicaSide = sqlSetSide(this.db, this.replication.replica.memberSource());
    const diff = await reconcileSets(ownerSide, replicaSide, options.set);
    report.set = {
      levels: diff.stats.levels,
      bucketsCompared: diff.stats.bucketsCompared,
      bucketsDiffering: diff.stats.bucketsDiffering,
      ms: diff.stats.ms,
    };
    const ids = new Set([
      ...diff.onlyInOwner.map((m) => m.id),
      ...diff.onlyInReplica.map((m) => m.id),
      ...diff.versionMismatch.map((m) => m.id),
      ...diff.contentMismatch.map((m) => m.id),
    ]);
    const unverified = await this.db.query<{ id: string }>(
      `SELECT id::text AS id FROM ${this.replication.replica.tableSql} WHERE state = 'UNVERIFIED'`,
    );
    for (const row of unverified.rows) ids.add(row.id);
    let lookupBytes = 0;
    for (const id of ids) {
      const before = ownerSide.traffic.requestBytes + ownerSide.traffic.responseBytes;
      const finding = await this.settle(id, options);
      lookupBytes += ownerSide.traffic.requestBytes + ownerSide.traffic.responseBytes - before;
      report.counts[finding.class] += 1;
      if (finding.action.startsWith('repaired')) report.repaired += 1;
      if (finding.action.startsWith('quarantined')) report.quarantined += 1;
      if (report.examples.filter((e) => e.class === finding.class).length < options.examples) {
        report.examples.push(finding);
      }
    }
    report.bytesExchanged =
      ownerSide.traffic.requestBytes + ownerSide.traffic.responseBytes + lookupBytes;
    return report;
  }

  private async waitForCut(timeoutMs: number): Promise<EntityReport['cut']> {
    const watermark = await this.owner.watermark();
    const deadline = Date.now() + timeoutMs;
    const type = `baton.entity.${this.replication.replica.entity}`;
    for (;;) {
      const r = await this.db.query<{ cursor: string | null; pending: string }>(
        `SELECT s.cursor,
                (SELECT count(*) FROM ${this.schemaSql}.inbox i
                 WHERE i.subscription = s.name AND i.status = 'pending' AND i.type = $2) AS pending
         FROM ${this.schemaSql}.subscriptions s WHERE s.name = $1`,
        [this.subscription, type],
      );
      const cursor = r.rows[0]?.cursor ?? null;
      const caughtUp =
        cursor !== null &&
        BigInt(feedPositionOf(cursor)) >= BigInt(watermark) &&
        Number(r.rows[0]?.pending) === 0;
      if (caughtUp || Date.now() >= deadline) return { watermark, replicaCursor: cursor, caughtUp };
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * Re-reads one id on both sides, classifies it, and (if asked) repairs it.
   * The replica row is locked first and the owner asked after: the owner's
   * answer is then at least as new as anything the replica can have applied
   * (an event arriving meanwhile waits for the lock), so a slow answer can
   * never move the replica back in time. A repair only ever writes a newer
   * version: the owner's answer when it is newer, otherwise what the owner
   * announces above the replica's version.
   */
  private async settle(id: string, options: EntityReconcileOptions): Promise<Finding> {
    const entity = this.replication.replica.entity;
    return this.db.transaction(async (tx) => {
      const replica = await this.replication.replica.lock(tx, id);
      const owner = await this.owner.lookup(entity, id);
      const { class: cls, repair } = classifyDifference(owner, replica);
      const finding: Finding = {
        id,
        class: cls,
        owner: { state: owner.state, version: owner.version },
        replica: replica ? { state: replica.state, version: replica.version } : null,
        action: 'none',
      };
      if (repair === 'none') {
        await this.clearQuarantine(tx, id);
        return finding;
      }
      if (cls === 'true-orphan') {
        // Only repairing runs count as confirmations: dry runs leave no trace.
        const confirmations = options.repair
          ? await this.quarantine(tx, id)
          : (await this.confirmations(tx, id)) + 1;
        const approved = options.approve || (await this.isApproved(tx, id));
        if (!options.repair) {
          finding.action =
            confirmations >= 2 || approved
              ? 'would apply the delete policy (confirmed orphan)'
              : 'would quarantine (repaired when confirmed by a second repairing run, or approved)';
          return finding;
        }
        if (confirmations < 2 && !approved) {
          finding.action = `quarantined (seen ${confirmations}×; repaired when confirmed twice or approved)`;
          return finding;
        }
      }
      if (!options.repair) {
        finding.action =
          repair === 'apply'
            ? `would apply the owner's ${owner.state} v${owner.version}`
            : `would ask the owner to announce its state above v${replica?.version ?? 0}`;
        return finding;
      }
      let answer = owner;
      if (repair === 'announce') {
        try {
          answer = await this.owner.announce(entity, id, replica?.version ?? 0);
        } catch (error) {
          finding.action = `not repaired: the owner could not announce its state (${(error as Error).message})`;
          return finding;
        }
      }
      // A policy the caretaker has to apply is an apology: something slipped through.
      // An owner with no record of the id announces it deleted without fields: the
      // replica's own copy is the best snapshot there is (keep, anonymise).
      const known = owner.state === 'absent' && replica ? replica.fields : answer.fields;
      await this.replication.apply(
        tx,
        { ...lookupToState(answer), fields: known },
        answer.version,
        {
          apology: true,
          reason: `caretaker: ${cls}`,
        },
      );
      await this.clearQuarantine(tx, id);
      finding.action = `repaired: applied the owner's ${answer.state} v${answer.version}${repair === 'announce' ? ' (announced)' : ''}`;
      return finding;
    });
  }

  private async quarantine(tx: Executor, id: string): Promise<number> {
    const r = await tx.query<{ confirmations: number }>(
      `INSERT INTO ${this.schemaSql}.quarantine (entity, id) VALUES ($1, $2)
       ON CONFLICT (entity, id) DO UPDATE SET confirmations = quarantine.confirmations + 1, last_seen = now()
       RETURNING confirmations`,
      [this.replication.replica.entity, id],
    );
    return r.rows[0]?.confirmations ?? 1;
  }

  private async confirmations(tx: Executor, id: string): Promise<number> {
    const r = await tx.query<{ confirmations: number }>(
      `SELECT confirmations FROM ${this.schemaSql}.quarantine WHERE entity = $1 AND id = $2`,
      [this.replication.replica.entity, id],
    );
    return r.rows[0]?.confirmations ?? 0;
  }

  private async isApproved(tx: Executor, id: string): Promise<boolean> {
    const r = await tx.query(
      `SELECT 1 FROM ${this.schemaSql}.quarantine WHERE entity = $1 AND id = $2 AND approved`,
      [this.replication.replica.entity, id],
    );
    return r.rows.length > 0;
  }

  private async clearQuarantine(tx: Executor, id: string): Promise<void> {
    await tx.query(`DELETE FROM ${this.schemaSql}.quarantine WHERE entity = $1 AND id = $2`, [
      this.replication.replica.entity,
      id,
    ]);
  }
}

function lookupToState(owner: EntityLookup): EntityState {
  if (owner.state === 'absent') {
    // An owner answers `absent` only to a lookup; what it announces is never absent.
    throw new Error('unreachable: an absent entity is announced as deleted');
  }
  return {
    entity: owner.entity,
    id: owner.id,
    state: owner.state,
    fields: owner.fields,
    personal: owner.personal,
  };
}

/** A report with nothing found yet (also what a failed entity check reports, with its error). */
export function emptyEntityReport(entity: string, owner: string): EntityReport {
  return {
    entity,
    owner,
    cut: { watermark: null, replicaCursor: null, caughtUp: false },
    counts: Object.fromEntries(DIFFERENCE_CLASSES.map((c) => [c, 0])) as Record<
      DifferenceClass,
      number
    >,
    examples: [],
    repaired: 0,
    quarantined: 0,
    bytesExchanged: 0,
    set: { levels: 0, bucketsCompared: 0, bucketsDiffering: 0, ms: 0 },
  };
}
