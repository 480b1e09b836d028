import type { Command } from 'commander';
import {
  type BatonStatus,
  type ReferencesStatus,
  readStatus,
  type SagasStatus,
} from '../../index.ts';
import { requireInstalled, withDatabase } from '../connection.ts';
import type { GlobalOptions } from '../global-options.ts';
import {
  type CliIo,
  formatDuration,
  formatFields,
  formatTable,
  formatTime,
  oneLine,
  plural,
  printJson,
  printLines,
} from '../output.ts';
import { blockedLines, dataLossLines, stuckLines } from '../subscription-lines.ts';

/** A relay that leaves events waiting this long is probably not running. */
const STALLED_RELAY_SECONDS = 60;

/** `baton status`: outbox backlog, relay lag, positions, subscriptions, dead letters and references. */
export function registerStatus(program: Command, io: CliIo): void {
  program
    .command('status')
    .description(
      'show the outbox backlog, relay lag, subscriptions (stuck ones, blocked keys, unreconciled data loss), dead letters, pending deletes, quarantined orphans, the last reconcile run and sagas (stuck ones first of all)',
    )
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
      [
        'NAME',
        'SOURCE',
        'CURSOR',
        'PENDING',
        'OLDEST PENDING',
        'DEAD',
        'BLOCKED KEYS',
        'BEHIND THEM',
        'UPDATED',
      ],
      status.subscriptions.map((s) => [
        s.name,
        s.source,
        s.cursor ?? '-',
        String(s.pending),
        s.pending > 0 ? formatDuration(s.oldestPendingAgeSeconds) : '-',
        String(s.deadLetters),
        String(s.blockedKeys),
        String(s.blockedEntries),
        formatTime(s.updatedAt),
      ]),
    );
    lines.push(...table.map((l) => `  ${l}`));
    for (const s of status.subscriptions) {
      const notes = [...stuckLines(s), ...blockedLines(s), ...dataLossLines(s)];
      lines.push(...notes.map((l) => `  ${l}`));
    }
  }
  lines.push(
    '',
    status.deadLetters === 0
      ? 'Dead letters: none'
      : `Dead letters: ${status.deadLetters} — see \`baton dlq list\``,
  );
  if (status.references.installed) lines.push('', ...renderReferences(status.references));
  if (status.sagas.installed) lines.push('', ...renderSagas(status.sagas));
  return lines;
}

/** Baton's foreign keys and triggers in the service's tables that a schema tool (or an operator) dropped or disabled. */
export function renderMissingObjects(missing: ReferencesStatus['missingObjects']): string[] {
  if (missing.length === 0) return ["Baton's keys and triggers in your tables: all in place"];
  const table = formatTable(
    ['TABLE', 'OBJECT', 'NAME', 'STATE', 'DECLARED BY'],
    missing.map((m) => [m.table, m.kind, m.name, m.state, m.declaredBy]),
  );
  return [
    `! ${plural(missing.length, "of Baton's keys and triggers in your tables is", "of Baton's keys and triggers in your tables are")} not in force:`,
    ...table.map((l) => `  ${l}`),
    '  a schema tool (TypeORM synchronize, drizzle-kit push, a generated migration) may have dropped them; references',
    '  are not checked or changes not captured meanwhile. `install()` restores them (every service start does),',
    '  or a repairing caretaker run in the service; then `baton reconcile` finds what slipped through.',
  ];
}

/** Sagas by state, the stuck ones with their error, the oldest still active. */
export function renderSagas(sagas: SagasStatus): string[] {
  const c = sagas.counts;
  const lines = [
    'Sagas',
    ...formatFields([
      [
        'active',
        `${c.running} running, ${c.completing} completing, ${c.compensating} compensating`,
      ],
      ['finished', `${c.completed} completed, ${c.compensated} compensated`],
      ['stuck', String(c.stuck)],
    ]),
  ];
  const o = sagas.oldestActive;
  if (o) {
    lines.push(
      `  oldest active: ${o.id} (${o.name}, ${o.state}, started ${formatDuration(o.ageSeconds)} ago${o.waitingFor ? `; ${oneLine(o.waitingFor, 80)}` : ''})`,
    );
  }
  if (sagas.stuck.total > 0) {
    const table = formatTable(
      ['ID', 'NAME', 'STUCK WHILE', 'SINCE', 'ERROR'],
      sagas.stuck.items.map((s) => [
        s.id,
        s.name,
        s.stuckFrom ?? '-',
        formatTime(s.stuckAt),
        oneLine(s.error, 80),
      ]),
    );
    lines.push(
      `  ! ${plural(sagas.stuck.total, 'saga is', 'sagas are')} stuck, waiting for an operator:`,
      ...table.map((l) => `  ${l}`),
      ...more(sagas.stuck),
      '  fix the cause, then `baton sagas retry <id>` (or `baton sagas abort <id>` for one stuck while compensating); details: `baton sagas show <id>`.',
    );
  }
  return lines;
}

/** Pending deletes, quarantine, policy actions, Baton's objects in your tables and the caretaker's last run. */
export function renderReferences(refs: ReferencesStatus): string[] {
  const lines = [...renderMissingObjects(refs.missingObjects), ''];
  lines.push("Pending deletes (restrict: waiting for referrers' votes)");
  if (refs.pendingDeletes.total === 0) lines.push('  none');
  else {
    const table = formatTable(
      ['ENTITY', 'ID', 'VERSION', 'REQUESTED', 'WAITING FOR'],
      refs.pendingDeletes.items.map((d) => [
        d.entity,
        d.id,
        String(d.version),
        formatTime(d.requestedAt),
        d.waitingFor.length > 0 ? d.waitingFor.join(', ') : '(all voted: finalising)',
      ]),
    );
    lines.push(...table.map((l) => `  ${l}`), ...more(refs.pendingDeletes));
    lines.push(
      "  a referrer that stays in WAITING FOR is down or not consuming this service's feed: check it.",
    );
  }
  lines.push('', 'Quarantined orphans (replica rows their owner never had)');
  if (refs.quarantine.total === 0) lines.push('  none');
  else {
    const table = formatTable(
      ['ENTITY', 'ID', 'CONFIRMATIONS', 'APPROVED', 'FIRST SEEN'],
      refs.quarantine.items.map((q) => [
        q.entity,
        q.id,
        String(q.confirmations),
        q.approved ? 'yes' : 'no',
        formatTime(q.firstSeen),
      ]),
    );
    lines.push(...table.map((l) => `  ${l}`), ...more(refs.quarantine));
    lines.push(
      '  repaired by the next `baton reconcile --repair` that confirms them, or now with `baton reconcile --repair --approve`.',
    );
  }
  const a = refs.policyActions;
  lines.push(
    '',
    `Policy actions: ${a.total} (${a.rowsAffected} referencing rows), of which ${plural(a.apologies, 'apology', 'apologies')}`,
    '',
  );
  const run = refs.lastReconcile;
  if (!run) lines.push('Last reconcile: never (run `baton reconcile`)');
  else {
    lines.push(
      'Last reconcile',
      ...formatFields([
        ['finished', formatTime(run.finishedAt)],
        ['mode', run.repair ? 'repair' : 'dry run'],
        ['differences', String(run.differences)],
        ['referencing rows', `${run.referencingRowProblems} with problems`],
        ['repaired', String(run.repaired)],
        ['quarantined', String(run.quarantined)],
        ['took', `${run.ms} ms`],
      ]),
    );
    if (run.failedEntities > 0) {
      lines.push(`  ! ${plural(run.failedEntities, 'entity', 'entities')} could not be checked.`);
    }
  }
  return lines;
}

function more(list: { total: number; items: unknown[] }): string[] {
  return list.total > list.items.length
    ? [`  … and ${list.total - list.items.length} more (the oldest are shown)`]
    : [];
}
