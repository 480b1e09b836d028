import type { Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';
import { quoteIdent } from '../db/sql.ts';
import { tableSql } from './definitions.ts';
import type { Reference } from './reference.ts';
import type { ReplicaRow } from './replica-store.ts';

export interface PolicyContext {
  /** The replica row as it stands after the delete (DELETED, with its snapshot). */
  entity: ReplicaRow;
  /** True when Baton had accepted a reference it could not verify, or the caretaker found what slipped through. */
  apology: boolean;
  reason: string;
}

/**
 * Applies a reference's on-delete policy to every row that points at a
 * deleted entity, in the caller's transaction, and records the action
 * (`policy_actions`). Returns how many referencing rows it affected.
 *
 * - cascade: delete them (their own triggers carry the cascade further — to
 *   other services if their table is an entity too).
 * - set-null: clear the column.
 * - keep: keep them; the replica row keeps the snapshot of the copied fields,
 *   also copied into `snapshotColumns` if declared.
 * - anonymise: like keep, with the personal fields removed from the snapshot —
 *   in `snapshotColumns` and in the replica row itself (the erasure wins over
 *   another reference's `keep` of the same entity; its columns still get the
 *   full snapshot).
 * - restrict: nothing can be done locally; the rows are counted and recorded
 *   as an apology (the delete bypassed the protocol; the caretaker reports it).
 */
export async function applyDeletePolicy(
  tx: Executor,
  schemaSql: string,
  ref: Reference,
  ctx: PolicyContext,
): Promise<number> {
  const d = ref.def;
  const table = tableSql(d.table);
  const column = quoteIdent(d.column);
  const id = ctx.entity.id;
  let affected = 0;
  switch (d.onDelete) {
    case 'cascade':
      affected =
        (
          await queryPrepared(
            tx,
            `DELETE FROM ${table} WHERE ${column} = $1::text::${ref.replica.idType}`,
            [id],
          )
        ).rowCount ?? 0;
      break;
    case 'set-null':
      affected =
        (
          await queryPrepared(
            tx,
            `UPDATE ${table} SET ${column} = NULL WHERE ${column} = $1::text::${ref.replica.idType}`,
            [id],
          )
        ).rowCount ?? 0;
      break;
    case 'keep':
      affected = await copySnapshot(tx, table, column, ref, ctx.entity);
      break;
    case 'anonymise':
      affected = await copySnapshot(tx, table, column, ref, ctx.entity);
      await anonymiseReplica(tx, ref, ctx.entity);
      break;
    case 'restrict':
      affected = Number(
        (
          await queryPrepared<{ n: string }>(
            tx,
            `SELECT count(*) AS n FROM ${table} WHERE ${column} = $1::text::${ref.replica.idType}`,
            [id],
          )
        ).rows[0]?.n ?? 0,
      );
      break;
  }
  if (affected > 0 || ctx.apology) {
    await queryPrepared(
      tx,
      `INSERT INTO ${schemaSql}.policy_actions (reference, entity, entity_id, policy, affected, apology, reason)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        ref.name,
        d.entity,
        id,
        d.onDelete,
        affected,
        ctx.apology || d.onDelete === 'restrict',
        ctx.reason,
      ],
    );
  }
  return affected;
}

/** The snapshot a `keep`/`anonymise` reference keeps: personal fields dropped for anonymise. */
export function snapshotFor(ref: Reference, entity: ReplicaRow): Record<string, unknown> {
  if (ref.def.onDelete !== 'anonymise') return entity.fields;
  const personal = new Set(entity.personal);
  return Object.fromEntries(
    Object.entries(entity.fields).map(([k, v]) => [k, personal.has(k) ? null : v]),
  );
}

async function copySnapshot(
  tx: Executor,
  table: string,
  column: string,
  ref: Reference,
  entity: ReplicaRow,
): Promise<number> {
  const mapping = Object.entries(ref.def.snapshotColumns);
  const snapshot = snapshotFor(ref, entity);
  if (mapping.length === 0) {
    const r = await queryPrepared<{ n: string }>(
      tx,
      `SELECT count(*) AS n FROM ${table} WHERE ${column} = $1::text::${ref.replica.idType}`,
      [entity.id],
    );
    return Number(r.rows[0]?.n ?? 0);
  }
  const sets = mapping.map(([, target], i) => `${quoteIdent(target)} = $${i + 2}`).join(', ');
  const values = mapping.map(([field]) => snapshot[field] ?? null);
  const r = await queryPrepared(
    tx,
    `UPDATE ${table} SET ${sets} WHERE ${column} = $1::text::${ref.replica.idType}`,
    [entity.id, ...values],
  );
  return r.rowCount ?? 0;
}

/** Nulls the personal fields of a deleted entity's replica row: the snapshot Baton keeps must not hold them. */
async function anonymiseReplica(tx: Executor, ref: Reference, entity: ReplicaRow): Promise<void> {
  await queryPrepared(
    tx,
    `UPDATE ${ref.replica.tableSql} SET fields = $2 WHERE id = $1::text::${ref.replica.idType} AND state = 'DELETED'`,
    [entity.id, snapshotFor(ref, entity)],
  );
}
