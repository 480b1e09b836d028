import type { Database, Executor } from '../db/executor.ts';
import type { EntityDefinition, EntityLookup } from './definitions.ts';

/** What `requestDelete` leads to. */
export type DeleteOutcome =
  | { state: 'done' }
  | { state: 'absent' }
  | { state: 'pending'; waitingFor: string[] }
  | { state: 'refused'; reason: string };

export interface DeleteVote {
  entity: string;
  id: string;
  version: number;
  referrer: string;
  vote: 'prepared' | 'vetoed';
  references: number;
}

/** What the protocol needs of the entity's owner. */
export interface RestrictDeleteOwner {
  db: Database;
  schemaSql: string;
  def: Required<EntityDefinition>;
  /** The entity's table, quoted. */
  table: string;
  /** `key = $1` with the parameter cast to the key's type. */
  keyEquals(executor: Executor): Promise<string>;
  lookup(id: string, executor: Executor): Promise<EntityLookup>;
  /** Emits the row's current fields with `state` (a version bump); returns the new version. */
  emitState(tx: Executor, id: string, state: 'active' | 'deleting'): Promise<number>;
}

/**
 * The coordinated delete of an entity with `restrict` referrers (DESIGN.md,
 * "References"): fence → drain → finalise. The owner marks the entity
 * DELETING (a fence row and a state event); each referrer moves its replica
 * row to DELETING — which waits for its in-flight references — counts its
 * references and votes; any veto restores the entity (ACTIVE again, the
 * delete refused with the referrer's reason), all prepared deletes it. A
 * referrer that is down keeps the delete pending, visibly.
 *
 *   (none) ──requestDelete──► pending ──all prepared──► finalizing ──► done
 *                                │
 *                                └──a veto──► refused (the entity ACTIVE again)
 */
export class RestrictDelete {
  constructor(private readonly o: RestrictDeleteOwner) {}

  /**
   * Deletes the entity. Without restrict referrers: at once (the trigger
   * emits the tombstone). With them: announces DELETING and waits for their
   * votes (see `recordVote`); the outcome is `pending` until every referrer
   * answered — a referrer that is down keeps it pending, visibly.
   */
  async requestDelete(id: string): Promise<DeleteOutcome> {
    const d = this.o.def;
    if (d.restrictReferrers.length === 0) {
      const r = await this.o.db.query(
        `DELETE FROM ${this.o.table} WHERE ${await this.o.keyEquals(this.o.db)}`,
        [id],
      );
      return r.rowCount ? { state: 'done' } : { state: 'absent' };
    }
    return this.o.db.transaction(async (tx) => {
      const row = await tx.query(
        `SELECT 1 FROM ${this.o.table} WHERE ${await this.o.keyEquals(tx)} FOR UPDATE`,
        [id],
      );
      if (row.rows.length === 0)
        return (await this.deleteStatus(id, tx)).state === 'done'
          ? { state: 'done' }
          : { state: 'absent' };
      const fence = await tx.query<{ state: string }>(
        `SELECT state FROM ${this.o.schemaSql}.delete_fences WHERE entity = $1 AND id = $2 FOR UPDATE`,
        [d.name, id],
      );
      if (fence.rows[0]?.state === 'pending') return this.deleteStatus(id, tx);
      const version = await this.o.emitState(tx, id, 'deleting');
      await tx.query(
        `INSERT INTO ${this.o.schemaSql}.delete_fences (entity, id, state, version) VALUES ($1, $2, 'pending', $3)
         ON CONFLICT (entity, id) DO UPDATE SET state = 'pending', version = excluded.version, reason = NULL,
           requested_at = now(), decided_at = NULL`,
        [d.name, id, version],
      );
      return { state: 'pending', waitingFor: [...d.restrictReferrers] };
    });
  }

  /** Where a coordinated delete stands. */
  async deleteStatus(id: string, executor: Executor = this.o.db): Promise<DeleteOutcome> {
    const d = this.o.def;
    const fence = await executor.query<{ state: string; reason: string | null; version: string }>(
      `SELECT state, reason, version FROM ${this.o.schemaSql}.delete_fences WHERE entity = $1 AND id = $2`,
      [d.name, id],
    );
    const f = fence.rows[0];
    if (f?.state === 'refused') return { state: 'refused', reason: f.reason ?? 'vetoed' };
    if (f?.state === 'pending') {
      const votes = await executor.query<{ referrer: string }>(
        `SELECT referrer FROM ${this.o.schemaSql}.delete_votes WHERE entity = $1 AND id = $2 AND version = $3`,
        [d.name, id, f.version],
      );
      const voted = new Set(votes.rows.map((v) => v.referrer));
      return { state: 'pending', waitingFor: d.restrictReferrers.filter((r) => !voted.has(r)) };
    }
    const lookup = await this.o.lookup(id, executor);
    if (lookup.state === 'deleted') return { state: 'done' };
    if (lookup.state === 'absent') return { state: 'absent' };
    return f?.state === 'done' ? { state: 'done' } : { state: 'absent' };
  }

  /**
   * Records a referrer's vote (inside the handler transaction of the vote
   * event) and decides: any veto restores the entity (ACTIVE again, the
   * delete refused with the referrer's reason); all prepared finalises the
   * delete. Votes for an older fence version are kept but change nothing.
   */
  async recordVote(tx: Executor, vote: DeleteVote): Promise<void> {
    const d = this.o.def;
    const s = this.o.schemaSql;
    await tx.query(
      `INSERT INTO ${s}.delete_votes (entity, id, version, referrer, vote, reference_count)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
      [d.name, vote.id, vote.version, vote.referrer, vote.vote, vote.references],
    );
    const fence = await tx.query<{ version: string }>(
      `SELECT version FROM ${s}.delete_fences WHERE entity = $1 AND id = $2 AND state = 'pending' FOR UPDATE`,
      [d.name, vote.id],
    );
    const current = fence.rows[0];
    if (!current || Number(current.version) !== vote.version) return;
    const votes = await tx.query<{ referrer: string; vote: string; reference_count: string }>(
      `SELECT referrer, vote, reference_count FROM ${s}.delete_votes WHERE entity = $1 AND id = $2 AND version = $3`,
      [d.name, vote.id, vote.version],
    );
    const veto = votes.rows.find((v) => v.vote === 'vetoed');
    if (veto) {
      const reason = `${veto.referrer} still has ${veto.reference_count} restrict reference(s) to ${d.name} ${vote.id}`;
      await tx.query(
        `UPDATE ${s}.delete_fences SET state = 'refused', reason = $3, decided_at = now() WHERE entity = $1 AND id = $2`,
        [d.name, vote.id, reason],
      );
      await this.o.emitState(tx, vote.id, 'active');
      return;
    }
    const prepared = new Set(votes.rows.map((v) => v.referrer));
    if (!d.restrictReferrers.every((r) => prepared.has(r))) return;
    await tx.query(
      `UPDATE ${s}.delete_fences SET state = 'finalizing' WHERE entity = $1 AND id = $2`,
      [d.name, vote.id],
    );
    await tx.query(`DELETE FROM ${this.o.table} WHERE ${await this.o.keyEquals(tx)}`, [vote.id]);
    await tx.query(
      `UPDATE ${s}.delete_fences SET state = 'done', decided_at = now() WHERE entity = $1 AND id = $2`,
      [d.name, vote.id],
    );
  }
}
