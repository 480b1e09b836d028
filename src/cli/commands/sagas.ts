import { type Command, InvalidArgumentError } from 'commander';
import {
  abortSaga,
  isSagaState,
  listSagas,
  retrySaga,
  SAGA_STATES,
  type SagaChange,
  type SagaDetail,
  SagasNotInstalledError,
  showSaga,
} from '../../index.ts';
import type { PgDatabase } from '../../pg.ts';
import { positiveInteger } from '../arguments.ts';
import { OperationalError } from '../cli-errors.ts';
import { requireInstalled, withDatabase } from '../connection.ts';
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

/** `baton sagas list|show|retry|abort`: see and operate the sagas this service orchestrates. */
export function registerSagas(program: Command, io: CliIo): void {
  const sagas = program
    .command('sagas')
    .description('list and inspect sagas; resume a stuck one (retry) or give one up (abort)');

  sagas
    .command('list')
    .description('list sagas, newest first')
    .option('--state <state>', `only this state (${SAGA_STATES.join(', ')})`, sagaState)
    .option('--name <name>', 'only sagas of this name')
    .option('--limit <n>', 'show at most n', positiveInteger, 50)
    .action(async (local: { state?: string; name?: string; limit: number }, command: Command) => {
      await run(io, command, async (db, options) => {
        const list = await listSagas(db, { schema: options.schema, ...local });
        if (options.json) return printJson(io, { ...list, limit: local.limit });
        if (list.total === 0) return printLines(io, [`no sagas${filterText(local)}.`]);
        const rows = list.sagas.map((s) => [
          s.id,
          s.name,
          s.key ?? '-',
          s.state === 'stuck' && s.stuckFrom ? `stuck (${s.stuckFrom})` : s.state,
          formatTime(s.createdAt),
          oneLine(s.error ?? s.waitingFor, 70),
        ]);
        printLines(io, [
          ...formatTable(['ID', 'NAME', 'KEY', 'STATE', 'STARTED', 'ERROR / WAITING FOR'], rows),
          '',
          `${list.sagas.length < list.total ? `showing ${list.sagas.length} of ` : ''}${plural(list.total, 'saga')}${filterText(local)}. Details: \`baton sagas show <id>\`.`,
        ]);
      });
    });

  sagas
    .command('show')
    .description(
      'show one saga: state, input, output, error, lease, and every step with its attempts, errors and times',
    )
    .argument('<id>', 'saga id (from `baton sagas list`)')
    .action(async (id: string, _local: object, command: Command) => {
      await run(io, command, async (db, options) => {
        const saga = await showSaga(db, id, { schema: options.schema });
        if (options.json) return printJson(io, saga);
        printLines(io, renderSaga(saga));
      });
    });

  sagas
    .command('retry')
    .description(
      'resume a stuck saga where it got stuck (its confirms or compensations), attempts counted from 0 again',
    )
    .argument('<id>', 'id of a stuck saga')
    .action(async (id: string, _local: object, command: Command) => {
      await run(io, command, async (db, options) => {
        const change = await retrySaga(db, id, { schema: options.schema });
        if (options.json) return printJson(io, change);
        printLines(io, [describeChange(change, 'retried')]);
      });
    });

  sagas
    .command('abort')
    .description(
      'give a saga up: it compensates its completed steps in reverse (running, or stuck while compensating; not while completing: confirms must finish)',
    )
    .argument('<id>', 'saga id')
    .option('--reason <text>', 'why (recorded as the saga error)', 'aborted from the command line')
    .action(async (id: string, local: { reason: string }, command: Command) => {
      await run(io, command, async (db, options) => {
        const change = await abortSaga(db, id, local.reason, { schema: options.schema });
        if (options.json) return printJson(io, change);
        printLines(io, [describeChange(change, 'aborted')]);
      });
    });
}

/** Connects, checks that Baton and its saga tables are installed, runs `fn`. */
function run(
  io: CliIo,
  command: Command,
  fn: (db: PgDatabase, options: GlobalOptions) => Promise<void>,
): Promise<void> {
  const options = command.optsWithGlobals<GlobalOptions>();
  return withDatabase(options, io, async (db, target) => {
    await requireInstalled(db, options.schema, target);
    try {
      await fn(db, options);
    } catch (error) {
      if (error instanceof SagasNotInstalledError) {
        throw new OperationalError(
          error.message.replace('of this database', `of database "${target.database}"`),
          { cause: error },
        );
      }
      throw error;
    }
  });
}

function describeChange(change: SagaChange, verb: 'retried' | 'aborted'): string {
  const reset =
    change.stepsReset.length > 0
      ? ` Compensation attempts reset on ${change.stepsReset.join(', ')}.`
      : '';
  return `${verb} saga ${change.id}: ${change.from} → ${change.to}.${reset} A running worker of its service picks it up within its poll interval; follow it with \`baton sagas show ${change.id}\`.`;
}

function renderSaga(s: SagaDetail): string[] {
  const lines = [
    `Saga ${s.id} — ${s.state}${s.stuckFrom ? ` (stuck while ${s.stuckFrom})` : ''}`,
    ...formatFields([
      ['name', s.name],
      ['key', s.key === null ? '-' : `${s.key} (#${s.keySeq ?? '?'})`],
      ['started', formatTime(s.createdAt)],
      ['updated', formatTime(s.updatedAt)],
      ['finished', formatTime(s.finishedAt)],
      ['deadline', formatTime(s.deadline)],
      ['waiting for', s.waitingFor ?? '-'],
      ['due', formatTime(s.wakeAt)],
      ['lease', s.leaseOwner ? `${s.leaseOwner} until ${s.leaseUntil}` : 'none'],
      ['runs', String(s.runs)],
      ['fence', String(s.fence)],
    ]),
    '',
    'Error',
    ...indent(s.error ?? '(none)'),
    '',
    'Steps',
  ];
  if (s.steps.length === 0) lines.push('  none recorded yet');
  else {
    const table = formatTable(
      ['#', 'STEP', 'KIND', 'STATE', 'ATTEMPTS', 'COMP.', 'STARTED', 'COMPLETED', 'COMPENSATED'],
      s.steps.map((st) => [
        String(st.ordinal),
        st.name,
        st.kind,
        st.state,
        String(st.attempts),
        String(st.compensationAttempts),
        isoSecond(st.startedAt),
        isoSecond(st.completedAt),
        isoSecond(st.compensatedAt),
      ]),
    );
    lines.push(...table.map((l) => `  ${l}`));
    for (const st of s.steps) {
      const notes = [
        st.lastError && `last error: ${st.lastError}`,
        st.retryAt && st.state === 'pending' && `retry at ${st.retryAt}`,
        st.waitUntil && st.state === 'pending' && `waits until ${st.waitUntil}`,
      ].filter(Boolean);
      if (notes.length > 0) lines.push(`  ${st.name}: ${notes.join('; ')}`);
    }
  }
  lines.push(
    '',
    'Input',
    ...indent(JSON.stringify(s.input, null, 2)),
    '',
    'Output',
    ...indent(s.output === null ? '-' : JSON.stringify(s.output, null, 2)),
  );
  const next = nextStep(s);
  if (next) lines.push('', next);
  return lines;
}

function nextStep(s: SagaDetail): string | undefined {
  if (s.state === 'stuck' && s.stuckFrom === 'compensating')
    return `Next: fix the failing compensation, then \`baton sagas retry ${s.id}\`.`;
  if (s.state === 'stuck')
    return `Next: fix the participant that refuses the confirm, then \`baton sagas retry ${s.id}\` (a saga stuck while completing cannot be aborted).`;
  if (s.state === 'running')
    return `To give it up: \`baton sagas abort ${s.id} --reason "…"\` (its completed steps are compensated).`;
  return undefined;
}

function filterText(local: { state?: string; name?: string }): string {
  const parts = [
    local.state && `in state ${local.state}`,
    local.name && `named ${local.name}`,
  ].filter(Boolean);
  return parts.length > 0 ? ` ${parts.join(' ')}` : '';
}

function isoSecond(value: string | null): string {
  return value === null ? '-' : value.replace(/\.\d{3}Z$/, 'Z');
}

function indent(text: string): string[] {
  return text.split('\n').map((l) => `  ${l}`);
}

function sagaState(value: string): string {
  if (!isSagaState(value)) {
    throw new InvalidArgumentError(`expected one of ${SAGA_STATES.join(', ')}.`);
  }
  return value;
}
