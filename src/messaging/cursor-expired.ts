import type { Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';

/**
 * Records on the subscription row that its producer refused its cursor
 * (410: the events after it were pruned), since when, and the oldest
 * position the producer still serves — what `baton consumers list` shows
 * and `baton consumers reset --to-oldest` moves to.
 *
 * Only while the row still holds that cursor: if an operator moved it in
 * the meantime, the refusal is old news. The first refusal of a cursor sets
 * the time; repeats only refresh the oldest retained position (the producer
 * keeps pruning). The subscription counts as stuck while its cursor is the
 * refused one, so moving the cursor ends it without another write.
 */
export async function recordCursorExpired(
  db: Executor,
  schemaSql: string,
  subscription: string,
  cursor: string | undefined,
  oldestRetained: string | undefined,
): Promise<void> {
  await queryPrepared(
    db,
    `UPDATE ${schemaSql}.subscriptions
     SET oldest_retained = $3,
         cursor_expired_at = CASE
           WHEN cursor_expired_at IS NOT NULL AND expired_cursor IS NOT DISTINCT FROM cursor
           THEN cursor_expired_at ELSE now() END,
         expired_cursor = cursor
     WHERE name = $1 AND cursor IS NOT DISTINCT FROM $2`,
    [subscription, cursor ?? null, oldestRetained ?? null],
  );
}
