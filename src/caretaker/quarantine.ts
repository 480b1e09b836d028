import { NotFoundError } from '../core/errors.ts';
import type { Executor } from '../db/executor.ts';

/**
 * An operator's word on a suspected true orphan in quarantine (a replica row
 * the owner never had): approved, the next repairing caretaker run repairs
 * it without waiting for a second confirmation (`baton reconcile --repair
 * --approve` approves every one at once). `NotFoundError` when it is not in
 * quarantine (repaired meanwhile, or never there).
 */
export async function approveQuarantined(
  db: Executor,
  schemaSql: string,
  entity: string,
  id: string,
): Promise<void> {
  const r = await db.query(
    `UPDATE ${schemaSql}.quarantine SET approved = true WHERE entity = $1 AND id = $2`,
    [entity, id],
  );
  if (r.rowCount !== 1)
    throw new NotFoundError(
      `no ${entity} ${id} in quarantine: a caretaker run repaired it meanwhile, or it was never there.`,
    );
}

/**
 * Approves every suspected orphan in quarantine at once (what `baton
 * reconcile --repair --approve` does for its run): the next repairing run
 * repairs them all. Returns how many were approved now.
 */
export async function approveAllQuarantined(db: Executor, schemaSql: string): Promise<number> {
  const r = await db.query(`UPDATE ${schemaSql}.quarantine SET approved = true WHERE NOT approved`);
  return r.rowCount ?? 0;
}
