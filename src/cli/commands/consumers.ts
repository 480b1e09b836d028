import type { Command } from 'commander';
import {
  type CursorReset,
  type CursorTarget,
  InvalidInputError,
  listSubscriptions,
  parsePosition,
  resetSubscriptionCursor,
  type SubscriptionStatus,
} from '../../index.ts';
import { UsageError } from '../cli-errors.ts';
import { runInstalled } from '../connection.ts';
import type { GlobalOptions } from '../global-options.ts';
import { type CliIo, formatTable, printJson, printLines } from '../output.ts';
import { dataLossLines, stuckLines } from '../subscription-lines.ts';

/** `baton consumers list|reset`: this database's subscriptions, and moving a stuck one on. */
export function registerConsumers(program: Command, io: CliIo): void {
  const consumers = program
    .command('consumers')
    .description(
      "list this service's subscriptions (cursor, stuck, backlog, blocked keys, data loss); move a subscription's cursor",
    );

  consumers
    .command('list')
    .description(
      'per subscription: source, cursor, stuck (its producer pruned past the cursor) with the oldest retained position, pending, dead, blocked keys and entries behind them, unreconciled data loss',
    )
    .action(async (_local: object, command: Command) => {
      await runInstalled<GlobalOptions>(io, command, async (db, options) => {
        const subscriptions = await listSubscriptions(db, { schema: options.schema });
        if (options.json) return printJson(io, { subscriptions });
        printLines(io, renderList(subscriptions));
      });
    });

  consumers
    .command('reset')
    .description(
      "move a subscription's cursor: forward skips events for good (recorded as data loss, to reconcile), backward reads events again; a running consumer follows at once",
    )
    .argument('<subscription>', 'subscription name (from `baton consumers list`)')
    .option(
      '--to-oldest',
      'to the oldest position its producer still serves (recorded when the producer refused the cursor)',
    )
    .option('--to <position>', 'to this feed position')
    .option('--yes', 'make the move (without it: show what it would do, change nothing)')
    .action(
      async (
        subscription: string,
        local: { toOldest?: boolean; to?: string; yes?: boolean },
        command: Command,
      ) => {
        const target = resetTarget(local);
        await runInstalled<GlobalOptions>(io, command, async (db, options) => {
          const reset = await resetSubscriptionCursor(db, subscription, target, {
            schema: options.schema,
            dryRun: !local.yes,
          });
          if (options.json) printJson(io, reset);
          else printLines(io, renderReset(reset));
          if (!local.yes && reset.direction !== 'unchanged') {
            throw new UsageError(
              `nothing was changed: \`baton consumers reset\` moves a cursor only with --yes. Check the move above, then run the same command with --yes.`,
            );
          }
        });
      },
    );
}

function resetTarget(local: { toOldest?: boolean; to?: string }): CursorTarget {
  if (local.toOldest && local.to !== undefined) {
    throw new UsageError('consumers reset: give --to-oldest or --to <position>, not both.');
  }
  if (local.toOldest) return { toOldest: true };
  if (local.to === undefined) {
    throw new UsageError(
      'consumers reset: say where to: --to-oldest (the oldest position its producer still serves, see `baton consumers list`) or --to <position>.',
    );
  }
  try {
    return { to: parsePosition(local.to) };
  } catch (error) {
    if (error instanceof InvalidInputError) throw new UsageError(`--to: ${error.message}`);
    throw error;
  }
}

function renderList(subscriptions: readonly SubscriptionStatus[]): string[] {
  if (subscriptions.length === 0) {
    return ['no subscriptions (no consumer has started against this database).'];
  }
  const lines = formatTable(
    [
      'NAME',
      'SOURCE',
      'CURSOR',
      'STATE',
      'PENDING',
      'DEAD',
      'BLOCKED KEYS',
      'BEHIND THEM',
      'DATA LOSS',
    ],
    subscriptions.map((s) => [
      s.name,
      s.source,
      s.cursor ?? '-',
      s.stuck ? `stuck (serves from ${s.stuck.oldestRetained ?? '?'})` : 'reading',
      String(s.pending),
      String(s.deadLetters),
      String(s.blockedKeys),
      String(s.blockedEntries),
      String(s.dataLoss.length),
    ]),
  );
  const notes = subscriptions.flatMap((s) => [...stuckLines(s), ...dataLossLines(s)]);
  return notes.length > 0 ? [...lines, '', ...notes] : lines;
}

function renderReset(r: CursorReset): string[] {
  const from = r.from ?? '0';
  if (r.direction === 'unchanged') {
    return [`the cursor of "${r.subscription}" is already at ${r.to}: nothing to change.`];
  }
  const lines = [
    r.applied
      ? `moved the cursor of "${r.subscription}" ${r.direction === 'backward' ? 'back ' : ''}from ${from} to ${r.to}. A running consumer reads on from ${r.to} at once.`
      : `would move the cursor of "${r.subscription}" ${r.direction === 'backward' ? 'back ' : ''}from ${from} to ${r.to} (not done: add --yes).`,
  ];
  if (r.dataLoss) {
    const { fromPosition, toPosition, id, reason } = r.dataLoss;
    lines.push(
      `! the events after ${fromPosition} up to ${toPosition} are never read by this subscription. ${id ? `Recorded as data loss ${id}` : 'To be recorded as data loss'} — ${reason}.`,
      '  The gap must be reconciled: `baton reconcile --repair` repairs replicas of entities; other events in the gap are lost to this subscription.',
    );
  }
  for (const w of r.warnings) lines.push(`! ${w}`);
  return lines;
}
