/**
 * The NOTIFY channels of one Baton schema:
 * - `outbox`: publishers wake the relay;
 * - `feed`: the relay wakes the feed's long-polls;
 * - `cursor`: an operator's cursor reset wakes the subscription's consumer
 *   (payload: the subscription name).
 */
export function channelsFor(schema: string): { outbox: string; feed: string; cursor: string } {
  return {
    outbox: `baton_outbox_${schema}`,
    feed: `baton_feed_${schema}`,
    cursor: `baton_cursor_${schema}`,
  };
}
