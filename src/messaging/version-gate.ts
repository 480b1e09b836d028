import type { Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';

/**
 * A max-version register for state events ("customer 7 is now version 12").
 * Returns true, and records `version`, only if it is newer than what `scope`
 * has seen for `key`; a duplicate or older event returns false and changes
 * nothing. Runs in the handler's transaction, so the register and the effect
 * commit together.
 */
export async function acceptIfNewer(
  tx: Executor,
  schemaSql: string,
  scope: string,
  key: string,
  version: number,
): Promise<boolean> {
  const result = await queryPrepared(
    tx,
    `INSERT INTO ${schemaSql}.version_gates AS g (scope, key, version, seal)
     VALUES ($1, $2, $3, ${schemaSql}.gate_seal($1, $2, $3))
     ON CONFLICT (scope, key) DO UPDATE SET version = excluded.version, seal = excluded.seal
       WHERE g.version < excluded.version
     RETURNING 1`,
    [scope, key, version],
  );
  return result.rows.length === 1;
}
