import type { SubscriptionStatus } from '../index.ts';
import { formatDuration, formatTable, formatTime, oneLine, plural } from './output.ts';

/** Entries piling up behind blocked keys: they hold back nothing else, so only this shows them. */
export function blockedLines(s: SubscriptionStatus): string[] {
  if (s.blockedEntries === 0) return [];
  return [
    `! ${s.name}: ${plural(s.blockedEntries, 'entry waits', 'entries wait')} behind ${plural(s.blockedKeys, 'blocked key')} (a dead letter, or a failed entry waiting for its retry); other keys keep flowing, but these grow until the cause is fixed (dead letters: \`baton dlq list --subscription ${s.name}\`).`,
  ];
}

/** What a stuck subscription needs from an operator (`baton consumers list`, `baton status`). */
export function stuckLines(s: SubscriptionStatus): string[] {
  if (!s.stuck) return [];
  const { cursor, oldestRetained, since } = s.stuck;
  const ago = formatDuration((Date.now() - Date.parse(since)) / 1000);
  return [
    `! ${s.name} is stuck (for ${ago}): its producer ${s.source} pruned the events after cursor ${cursor ?? '0'} before it read them${oldestRetained ? `, and serves from position ${oldestRetained} on` : ''}.`,
    oldestRetained
      ? `  Move on: \`baton consumers reset ${s.name} --to-oldest --yes\` (the events after ${cursor ?? '0'} up to ${oldestRetained} are lost to it and recorded as data loss), then reconcile. Raise the producer's outbox retention so it does not happen again.`
      : `  The producer did not say where its feed starts: find its relay_state.pruned_through, then \`baton consumers reset ${s.name} --to <position> --yes\`, and reconcile.`,
  ];
}

/** Unreconciled ranges of one subscription (`baton consumers list`, `baton status`). */
export function dataLossLines(s: SubscriptionStatus): string[] {
  if (s.dataLoss.length === 0) return [];
  const table = formatTable(
    ['ID', 'FROM (AFTER)', 'TO', 'AT', 'REASON'],
    s.dataLoss.map((d) => [
      d.id,
      d.fromPosition,
      d.toPosition,
      formatTime(d.at),
      oneLine(d.reason, 100),
    ]),
  );
  return [
    `! ${s.name}: ${plural(s.dataLoss.length, 'range', 'ranges')} of ${s.source}'s feed never read, not reconciled:`,
    ...table.map((l) => `  ${l}`),
    '  `baton reconcile --repair` repairs replicas of entities; other events in these ranges are lost to this subscription. Once reconciled, mark a record: UPDATE <schema>.data_loss SET reconciled_at = now() WHERE id = <id>.',
  ];
}
