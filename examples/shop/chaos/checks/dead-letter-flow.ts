import { Anomalies, type CheckResult } from './anomalies.ts';

/**
 * What the harness saw of one subscription while some of its keys were
 * poisoned (poison.ts: their handler fails for good, so each has a dead
 * letter blocking its key and the key's later events pile up behind it),
 * measured live, before anything was healed (flow-probe.ts).
 */
export interface FlowObservation {
  /** The subscription watched (loyalty-from-customers). */
  subscription: string;
  /** The poisoned event keys (`customer:poison-…`). */
  poisonedKeys: string[];
  /** The consumer's backlog limit (`maxPendingEntries`). */
  limit: number;
  /** Poisoned keys that had a dead letter when the probe began (the block was in force). */
  deadLetteredKeys: string[];
  /** Entries waiting behind the dead letters when the probe began. */
  poisonedPending: number;
  /** The producer's feed position when the probe began: every event up to it must get through. */
  feedPosition: number;
  /** The subscription's cursor when the probe ended. */
  cursor: number;
  /** How long every other key was given, and how long it took (or the whole bound). */
  boundMs: number;
  waitedMs: number;
  /** Entries of other keys at or below `feedPosition` still not handled when the probe ended. */
  othersHeld: number;
  othersHeldExamples: { key: string; position: string; status: string; type: string | null }[];
}

/** The probe could not be taken (the poison's set-up failed); the check fails with the reason. */
export type FlowProbeResult = FlowObservation | { failed: string };

/**
 * A dead letter blocks only its own key: with poisoned keys dead-lettered
 * and their backlog past the consumer's limit, every other key keeps
 * flowing — the subscription reads the producer's feed up to where it was
 * when the probe began, and handles every other key's events up to there,
 * within the bound.
 *
 * - subscription-stalled   the cursor did not reach the feed position in time
 *                          (e.g. the consumer stopped fetching: its backlog counted
 *                          the entries that can only wait behind a dead letter);
 * - other-key-held         another key's entries were still pending or dead;
 * - poisoned-key-not-dead-lettered, backlog-below-limit
 *                          the set-up did not hold, so the run proved nothing: reported,
 *                          never passed silently;
 * - probe-failed           no observation at all.
 */
export function deadLetterBlocksOnlyItsKey(result: FlowProbeResult): CheckResult {
  const found = new Anomalies('dead-letter-blocks-only-its-key');
  if ('failed' in result) {
    found.add('probe-failed', { reason: result.failed });
    return found.result();
  }
  const o = result;
  for (const key of o.poisonedKeys)
    if (!o.deadLetteredKeys.includes(key)) found.add('poisoned-key-not-dead-lettered', { key });
  if (o.poisonedPending < o.limit)
    found.add('backlog-below-limit', { poisonedPending: o.poisonedPending, limit: o.limit });
  if (o.cursor < o.feedPosition)
    found.add('subscription-stalled', {
      subscription: o.subscription,
      cursor: o.cursor,
      feedPosition: o.feedPosition,
      waitedMs: o.waitedMs,
      poisonedPending: o.poisonedPending,
      limit: o.limit,
    });
  if (o.othersHeld > 0)
    found.add('other-key-held', {
      subscription: o.subscription,
      count: o.othersHeld,
      examples: o.othersHeldExamples,
    });
  return found.result();
}
