import { listReconcileRuns, readReconcileReport } from '../caretaker/status.ts';
import { NotFoundError } from '../core/errors.ts';
import { referencesInstalled } from '../references/status.ts';
import { html, lines } from './html.ts';
import { nextPage, type PageContext, type PageResult, table, when } from './layout.ts';

const PAGE_SIZE = 25;

/** The caretaker's runs, newest first, with what each found and repaired. */
export async function caretakerPage(ctx: PageContext): Promise<PageResult> {
  if (!(await referencesInstalled(ctx.db, ctx.schemaSql)))
    return {
      title: 'Caretaker',
      body: html`<p class="muted">The caretaker’s tables are not installed here.</p>`,
    };
  const before = ctx.url.searchParams.get('before') ?? undefined;
  const { runs, total } = await listReconcileRuns(ctx.db, ctx.schemaSql, {
    before,
    limit: PAGE_SIZE,
  });
  const rows = runs.map((r) => [
    html`<a href="${ctx.base}/caretaker/${r.id}">${r.id}</a>`,
    when(r.finishedAt),
    r.repair ? 'repair' : 'dry run',
    r.differences,
    r.repaired,
    r.quarantined,
    r.invariantViolations,
    r.integrityProblems,
    r.failedEntities,
  ]);
  return {
    title: 'Caretaker runs',
    body: html`${table(
      [
        'run',
        'finished',
        'kind',
        'differences',
        'repaired',
        'quarantined',
        'invariant violations',
        'integrity problems',
        'failed entities',
      ],
      rows,
      'The caretaker has not run yet (`baton reconcile`, or `caretaker.schedule`).',
    )}${nextPage(ctx, '/caretaker', { before: runs.at(-1)?.id }, rows.length, total, PAGE_SIZE)}`,
  };
}

/** One run: per entity what differed and what was done, referencing rows, invariants. */
export async function caretakerRunPage(ctx: PageContext, id: string): Promise<PageResult> {
  const run = await readReconcileReport(ctx.db, ctx.schemaSql, id);
  if (!run) throw new NotFoundError(`no caretaker run ${id}.`);
  const report = run.report;
  const entities = objects(report.entities).map(
    (e) => html`<h2>Entity ${e.entity ?? '?'} (owner ${e.owner ?? '?'})</h2>
${e.error ? html`<p class="notice error">check failed: ${e.error}</p>` : ''}
<p>${Object.entries(isObject(e.counts) ? e.counts : {})
      .filter(([, n]) => typeof n === 'number' && n > 0)
      .map(
        ([name, n]) => html`${name} ${n}; `,
      )} repaired ${e.repaired ?? 0}, quarantined ${e.quarantined ?? 0}</p>
${table(
  ['id', 'class', 'action'],
  objects(e.examples).map((f) => [
    html`<span class="mono">${f.id ?? ''}</span>`,
    f.class ?? '',
    f.action ?? '',
  ]),
  'No differences.',
)}
${table(
  ['reference', 'dangling', 'policy not applied', 'restrict violations', 'repaired'],
  objects(e.referencingRows).map((r) => [
    r.reference ?? '',
    r.dangling ?? 0,
    r.policyNotApplied ?? 0,
    r.restrictViolations ?? 0,
    r.repaired ?? 0,
  ]),
  'No references to this entity here.',
)}`,
  );
  const invariants = table(
    ['invariant', 'violations', 'remedied', 'examples'],
    objects(report.invariants).map((i) => [
      i.name ?? '',
      i.violations ?? 0,
      i.remedied ?? 0,
      i.error
        ? html`<span class="mono">check failed: ${i.error}</span>`
        : html`<pre>${lines(JSON.stringify(i.examples ?? [], null, 2))}</pre>`,
    ]),
    'No invariants declared (baton.invariant), or none checked in this run.',
  );
  return {
    title: `Caretaker run ${run.id}`,
    body: html`<p>${run.repair ? 'Repairing run' : 'Dry run'}, finished ${when(run.finishedAt)}, took ${report.ms ?? '?'} ms.</p>
${entities}<h2>Invariants</h2>${invariants}
<h2>Totals</h2><pre>${lines(JSON.stringify(report.totals ?? {}, null, 2))}</pre>
<p><a href="${ctx.base}/caretaker">← all runs</a></p>`,
  };
}

/** The objects of a list from a stored report (written by any Baton version, or by hand): nothing else. */
function objects<T extends object>(value: T[] | undefined): T[] {
  return Array.isArray(value) ? value.filter(isObject) : [];
}

function isObject(value: unknown): value is Record<string, never> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
