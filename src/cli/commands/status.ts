import type { Command } from 'commander';
import { type BatonStatus, readStatus } from '../../status.ts';
import { requireInstalled, withDatabase } from '../connection.ts';
import type { GlobalOptions } from '../global-options.ts';
import {
  type CliIo,
  formatDuration,
  formatFields,
  formatTable,
  formatTime,
  printJson,
  printLines,
} from '../output.ts';

/** A relay that leaves events waiting this long is probably not running. */
const STALLED_RELAY_SECONDS = 60;

/** `baton status`: outbox backlog, relay lag, positions, subscriptions and dead letters. */
export function registerStatus(program: Command, io: CliIo): void {
  program
    .command('status')
    .description('show the outbox backlog, relay lag, subscriptions and dead letters')
    .action(async (_local: object, command: Command) => {
      const options = command.optsWithGlobals<GlobalOptions>();
      await withDatabase(options, io, async (db, target) => {
        await requireInstalled(db, options.schema, target);
        const status = await readStatus(db, { schema: options.schema });
        if (options.json) return printJson(io, status);
        printLines(io, renderStatus(status, `${target.database}@${target.host}:${target.port}`));
      });
    });
}

export function renderStatus(status: BatonStatus, where: string): string[] {
  const { outbox, migrations } = status;
  const lines = [
    `Baton in schema "${status.schema}" of ${where} — migration ${migrations.applied}${
      migrations.applied < migrations.latest
        ? ` (this Baton ships ${migrations.latest}: run \`baton migrate\`)`
        : ' (up to date)'
    }`,
    '',
    'Outbox',
    ...formatFields([
      ['backlog', `${outbox.backlog} unsequenced`],
      ['relay lag', formatDuration(outbox.relayLagSeconds)],
      ['last sequenced', String(outbox.lastSequenced)],
      ['pruned through', String(outbox.prunedThrough)],
    ]),
  ];
  if (outbox.backlog > 0 && outbox.relayLagSeconds >= STALLED_RELAY_SECONDS) {
    lines.push(
      `  ! events have waited ${formatDuration(outbox.relayLagSeconds)} for the relay: check that a relay is running for this service and see its log.`,
    );
  }
  lines.push('', 'Subscriptions');
  if (status.subscriptions.length === 0) {
    lines.push('  none (no consumer has started against this database)');
  } else {
    const table = formatTable(
      ['NAME', 'SOURCE', 'CURSOR', 'PENDING', 'OLDEST PENDING', 'DEAD', 'UPDATED'],
      status.subscriptions.map((s) => [
        s.name,
        s.source,
        s.cursor ?? '-',
        String(s.pending),
        s.pending > 0 ? formatDuration(s.oldestPendingAgeSeconds) : '-',
        String(s.deadLetters),
        formatTime(s.updatedAt),
      ]),
    );
    lines.push(...table.map((l) => `  ${l}`));
  }
  lines.push(
    '',
    status.deadLetters === 0
      ? 'Dead letters: none'
      : `Dead letters: ${status.deadLetters} — see \`baton dlq list\``,
  );
  return lines;
}
