import type { Executor } from '../db/executor.ts';
import { readSubscriptions, type SubscriptionStatus } from './subscription-status.ts';

export interface OutboxStatus {
  /** Committed events the relay has not sequenced yet (`seq IS NULL`). */
  backlog: number;
  /**
   * Age in seconds of the oldest unsequenced event, by its `occurredAt`
   * (0 when the backlog is empty). A growing lag means no relay is running
   * or it is failing.
   */
  relayLagSeconds: number;
  /** The last feed position handed out. */
  lastSequenced: number;
  /** Events at or below this position were pruned from the outbox. */
  prunedThrough: number;
}

/** The event's path: the outbox and relay, and every subscription with its inbox. */
export interface MessagingStatus {
  outbox: OutboxStatus;
  subscriptions: SubscriptionStatus[];
  /** Dead letters over all subscriptions. */
  deadLetters: number;
}

export async function readMessagingStatus(db: Executor, s: string): Promise<MessagingStatus> {
  const outbox = await db.query<OutboxRow>(
    `SELECT
       (SELECT count(*) FROM ${s}.outbox WHERE seq IS NULL) AS backlog,
       (SELECT coalesce(greatest(extract(epoch FROM now() - min(occurred_at)), 0), 0)::float8
          FROM ${s}.outbox WHERE seq IS NULL) AS lag,
       r.last_seq, r.pruned_through
     FROM ${s}.relay_state r`,
  );
  const o = outbox.rows[0];
  const subscriptions = await readSubscriptions(db, s);
  return {
    outbox: {
      backlog: Number(o?.backlog ?? 0),
      relayLagSeconds: Math.round((o?.lag ?? 0) * 1000) / 1000,
      lastSequenced: Number(o?.last_seq ?? 0),
      prunedThrough: Number(o?.pruned_through ?? 0),
    },
    subscriptions,
    deadLetters: subscriptions.reduce((sum, sub) => sum + sub.deadLetters, 0),
  };
}

interface OutboxRow {
  backlog: string;
  lag: number;
  last_seq: string;
  pruned_through: string;
}
