/**
 * The NOTIFY channels of one Baton schema:
 * - `outbox`: publishers wake the relay;
 * - `feed`: the relay wakes the feed's long-polls;
 * - `cursor`: an operator's cursor reset wakes the subscription's consumer
 *   (payload: the subscription name);
 * - `sagas`: a saga settled — completed, compensated or stuck (payload: its
 *   id; sent by the `saga_settled` trigger, which names it the same way).
 */
export function channelsFor(schema: string): {
  outbox: string;
  feed: string;
  cursor: string;
  sagas: string;
} {
  return {
    outbox: `baton_outbox_${schema}`,
    feed: `baton_feed_${schema}`,
    cursor: `baton_cursor_${schema}`,
    sagas: `baton_sagas_${schema}`,
  };
}
