/**
 * The life of an inbox entry (one received event, per subscription):
 *
 *   pending ──handler commits──────────────► handled
 *   pending ──attempts exhausted / terminal─► dead
 *   dead    ──operator: dlq retry──────────► pending   (attempts reset)
 *   dead    ──operator: dlq discard────────► discarded
 *
 * `pending` also covers "failed, waiting for its retry time"
 * (`next_attempt_at` in the future, `attempts > 0`). Undecodable input is
 * born `dead`. The SQL CHECK on `inbox.status` lists the same states.
 */
export const INBOX_STATES = ['pending', 'handled', 'dead', 'discarded'] as const;
export type InboxState = (typeof INBOX_STATES)[number];

const TRANSITIONS: Readonly<Record<InboxState, readonly InboxState[]>> = {
  pending: ['handled', 'dead', 'pending'],
  handled: [],
  dead: ['pending', 'discarded'],
  discarded: [],
};

export function canTransition(from: InboxState, to: InboxState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** What a dead letter does to later events of its key. */
export type DeadLetterMode =
  /** Later events of the same key wait until the dead letter is retried or discarded (keeps per-key order). */
  | 'block-key'
  /** The dead letter is set aside; later events of its key go on (order across it is given up). */
  | 'skip';
