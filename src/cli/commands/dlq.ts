import type { Command } from 'commander';
import {
  type DeadLetterDetail,
  discardDeadLetters,
  InvalidInputError,
  listDeadLetters,
  parseInboxId,
  retryDeadLetters,
  showDeadLetter,
} from '../../index.ts';
import { positiveInteger } from '../arguments.ts';
import { UsageError } from '../cli-errors.ts';
import { runInstalled } from '../connection.ts';
import type { GlobalOptions } from '../global-options.ts';
import {
  type CliIo,
  formatFields,
  formatTable,
  formatTime,
  oneLine,
  plural,
  printJson,
  printLines,
} from '../output.ts';

/** `baton dlq list|show|retry|discard`: inspect and resolve dead letters. */
export function registerDlq(program: Command, io: CliIo): void {
  const dlq = program
    .command('dlq')
    .description('inspect, retry or discard dead letters (events a consumer gave up on)');

  dlq
    .command('list')
    .description('list dead letters, oldest first')
    .option('--subscription <name>', 'only this subscription')
    .option('--limit <n>', 'show at most n', positiveInteger, 50)
    .action(async (local: { subscription?: string; limit: number }, command: Command) => {
      await runInstalled<GlobalOptions>(io, command, async (db, options) => {
        const list = await listDeadLetters(db, { schema: options.schema, ...local });
        if (options.json) return printJson(io, { ...list, limit: local.limit });
        if (list.total === 0) return printLines(io, ['no dead letters.']);
        const rows = list.deadLetters.map((d) => [
          d.inboxId,
          d.subscription,
          d.type ?? '(undecodable)',
          d.key,
          String(d.attempts),
          formatTime(d.receivedAt),
          oneLine(d.lastError, 80),
        ]);
        printLines(io, [
          ...formatTable(
            ['ID', 'SUBSCRIPTION', 'TYPE', 'KEY', 'ATTEMPTS', 'RECEIVED', 'ERROR'],
            rows,
          ),
          '',
          `${list.deadLetters.length < list.total ? `showing ${list.deadLetters.length} of ` : ''}${plural(list.total, 'dead letter')}. Details: \`baton dlq show <id>\`; then \`baton dlq retry <id>\` once the cause is fixed, or \`baton dlq discard <id>\`.`,
        ]);
      });
    });

  dlq
    .command('show')
    .description(
      'show everything stored about one dead letter: error, payload, headers, attempts, times',
    )
    .argument('<inboxId>', 'id from `baton dlq list`')
    .action(async (inboxId: string, _local: object, command: Command) => {
      const id = usageId(inboxId);
      await runInstalled<GlobalOptions>(io, command, async (db, options) => {
        const entry = await showDeadLetter(db, id, { schema: options.schema });
        if (options.json) return printJson(io, entry);
        printLines(io, renderDeadLetter(entry));
      });
    });

  dlq
    .command('retry')
    .description('hand dead letters back to their consumer (attempts reset, due now)')
    .argument('[inboxIds...]', 'ids from `baton dlq list`')
    .option('--all', 'retry every dead letter (of --subscription, if given)')
    .option('--subscription <name>', 'with --all: only this subscription')
    .action(
      async (
        inboxIds: string[],
        local: { all?: boolean; subscription?: string },
        command: Command,
      ) => {
        const target = retryTarget(inboxIds, local);
        await runInstalled<GlobalOptions>(io, command, async (db, options) => {
          const result = await retryDeadLetters(db, target, { schema: options.schema });
          if (options.json) return printJson(io, result);
          const lines = [
            result.retried.length === 0
              ? 'no dead letters to retry.'
              : `retried ${plural(result.retried.length, 'dead letter')}: ${result.retried.join(', ')}. They are pending again; a running consumer takes them within about a second (\`baton status\` shows progress).`,
          ];
          if (result.skipped.length > 0) {
            lines.push(
              `skipped ${result.skipped.join(', ')}: undecodable input that no handler can take; inspect with \`baton dlq show\`, then discard.`,
            );
          }
          printLines(io, lines);
        });
      },
    );

  dlq
    .command('discard')
    .description('give up on dead letters for good; later events of their keys go on')
    .argument('<inboxIds...>', 'ids from `baton dlq list`')
    .action(async (inboxIds: string[], _local: object, command: Command) => {
      const ids = inboxIds.map(usageId);
      await runInstalled<GlobalOptions>(io, command, async (db, options) => {
        const discarded = await discardDeadLetters(db, ids, { schema: options.schema });
        if (options.json) return printJson(io, { discarded });
        printLines(io, [
          `discarded ${plural(discarded.length, 'dead letter')}: ${discarded.join(', ')}.`,
        ]);
      });
    });
}

function retryTarget(
  inboxIds: string[],
  local: { all?: boolean; subscription?: string },
): Parameters<typeof retryDeadLetters>[1] {
  if (local.all && inboxIds.length > 0) {
    throw new UsageError('dlq retry: give inbox ids or --all, not both.');
  }
  if (local.all) {
    return local.subscription === undefined
      ? { all: true }
      : { all: true, subscription: local.subscription };
  }
  if (local.subscription !== undefined) {
    throw new UsageError(
      'dlq retry: --subscription only goes with --all (ids already name their entries).',
    );
  }
  if (inboxIds.length === 0) {
    throw new UsageError(
      'dlq retry: give the inbox ids to retry (from `baton dlq list`), or --all [--subscription <name>].',
    );
  }
  return { ids: inboxIds.map(usageId) };
}

function usageId(value: string): string {
  try {
    return parseInboxId(value);
  } catch (error) {
    if (error instanceof InvalidInputError) throw new UsageError(error.message);
    throw error;
  }
}

function renderDeadLetter(d: DeadLetterDetail): string[] {
  const lines = [
    `Inbox entry ${d.inboxId} — ${d.status}${d.status === 'dead' ? ' (dead letter)' : ''}`,
    ...formatFields([
      ['subscription', d.subscription],
      ['position', d.position],
      ['event id', d.eventId ?? '-'],
      ['type', d.type ?? '(undecodable input)'],
      ['key', d.key],
      ['version', d.version === null ? '-' : String(d.version)],
      ['source', d.source ?? '-'],
      ['occurred at', formatTime(d.occurredAt)],
      ['received at', formatTime(d.receivedAt)],
      ['attempts', String(d.attempts)],
      ['next attempt', d.status === 'pending' ? formatTime(d.nextAttemptAt) : '-'],
      ['handled at', formatTime(d.handledAt)],
    ]),
    '',
    'Error',
    ...indent(d.lastError ?? '(none recorded)'),
    '',
    'Headers',
    ...indent(d.headers === null ? '-' : JSON.stringify(d.headers, null, 2)),
    '',
    'Payload',
    ...indent(d.payload === null ? '-' : JSON.stringify(d.payload, null, 2)),
  ];
  if (d.raw !== null) lines.push('', 'Raw input (as received)', ...indent(d.raw));
  if (d.status === 'dead') {
    lines.push(
      '',
      d.type === null
        ? `Next: fix the producer, then \`baton dlq discard ${d.inboxId}\` (undecodable input cannot be retried).`
        : `Next: fix the cause, then \`baton dlq retry ${d.inboxId}\`; or \`baton dlq discard ${d.inboxId}\` to give it up.`,
    );
  }
  return lines;
}

function indent(text: string): string[] {
  return text.split('\n').map((l) => `  ${l}`);
}
