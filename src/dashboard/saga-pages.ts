import { InvalidInputError } from '../core/errors.ts';
import {
  abortSaga,
  isSagaState,
  listSagas,
  retrySaga,
  type SagaDetail,
  showSaga,
} from '../sagas/saga-admin.ts';
import { SAGA_STATES } from '../sagas/saga-states.ts';
import { type Html, html, lines, query } from './html.ts';
import {
  actionButton,
  nextPage,
  type PageContext,
  type PageResult,
  state,
  table,
  when,
} from './layout.ts';

const PAGE_SIZE = 50;

/** Sagas, newest first, of every state or one; paged by the last one shown. */
export async function sagasPage(ctx: PageContext): Promise<PageResult> {
  const chosen = ctx.url.searchParams.get('state') ?? undefined;
  const name = ctx.url.searchParams.get('name') || undefined;
  const before = ctx.url.searchParams.get('before') ?? undefined;
  if (chosen !== undefined && !isSagaState(chosen))
    throw new InvalidInputError(
      `unknown saga state "${chosen}": use one of ${SAGA_STATES.join(', ')}.`,
    );
  const list = await listSagas(ctx.db, {
    schema: ctx.schema,
    state: chosen,
    name,
    before,
    limit: PAGE_SIZE,
  });
  const filters = html`<p class="filters">State: <a class="${chosen ? '' : 'on'}" href="${ctx.base}/sagas${query({ name })}">all</a>${SAGA_STATES.map(
    (s) =>
      html`<a class="${s === chosen ? 'on' : ''}" href="${ctx.base}/sagas${query({ state: s, name })}">${s}</a>`,
  )}</p>
<form method="get" action="${ctx.base}/sagas">${chosen ? html`<input type="hidden" name="state" value="${chosen}">` : ''}<label>Saga name <input name="name" value="${name ?? ''}"></label> <button>Filter</button></form>`;
  const rows = list.sagas.map((s) => [
    html`<a class="mono" href="${ctx.base}/sagas/${encodeURIComponent(s.id)}">${s.id}</a>`,
    s.name,
    state(s.state),
    html`<span class="mono">${s.key ?? ''}</span>`,
    s.waitingFor ?? '',
    html`<span class="mono">${(s.error ?? '').slice(0, 160)}</span>`,
    s.runs,
    when(s.createdAt),
  ]);
  return {
    title: 'Sagas',
    body: html`${filters}${table(
      ['id', 'name', 'state', 'key', 'waiting for', 'error', 'runs', 'started'],
      rows,
      'No sagas here.',
    )}${nextPage(ctx, '/sagas', { state: chosen, name, before: list.sagas.at(-1)?.id }, rows.length, list.total, PAGE_SIZE)}`,
  };
}

/** One saga: its input, output or error, and a timeline of its steps and compensations. */
export async function sagaPage(ctx: PageContext, id: string): Promise<PageResult> {
  const saga = await showSaga(ctx.db, id, { schema: ctx.schema });
  const done = ctx.url.searchParams.get('done');
  const path = `/sagas/${encodeURIComponent(saga.id)}`;
  const canRetry = saga.state === 'stuck';
  const canAbort =
    saga.state === 'running' || (saga.state === 'stuck' && saga.stuckFrom === 'compensating');
  const actions = html`<p>${canRetry ? actionButton(ctx, `${path}/retry`, `Retry (${saga.stuckFrom === 'completing' ? 'confirms' : 'compensations'})`) : ''}
${canAbort ? html`<form class="inline" method="post" action="${ctx.base}${path}/abort"><input type="hidden" name="csrf" value="${ctx.csrf}"><label>Reason <input name="reason" required></label> <button class="danger">Abort (compensate)</button></form>` : ''}</p>`;
  const facts = table(
    ['field', 'value'],
    [
      ['name', saga.name],
      [
        'state',
        html`${state(saga.state)}${saga.stuckFrom ? ` (stuck while ${saga.stuckFrom})` : ''}`,
      ],
      ['key', html`<span class="mono">${saga.key ?? '—'}</span>`],
      ['waiting for', saga.waitingFor ?? '—'],
      ['runs', saga.runs],
      ['started', when(saga.createdAt)],
      ['finished', when(saga.finishedAt)],
      ['deadline', when(saga.deadline)],
      ['worker', saga.leaseOwner ? html`${saga.leaseOwner} until ${when(saga.leaseUntil)}` : '—'],
    ],
    '',
  );
  return {
    title: `Saga ${saga.id}`,
    notice: NOTICES[done ?? ''],
    body: html`${actions}${facts}
${saga.error ? html`<h2>Error</h2><pre>${lines(saga.error)}</pre>` : ''}
<h2>Timeline</h2>${timeline(saga)}
<h2>Input</h2><pre>${lines(JSON.stringify(saga.input, null, 2) ?? 'null')}</pre>
<h2>Output</h2><pre>${lines(JSON.stringify(saga.output, null, 2) ?? 'null')}</pre>
<p><a href="${ctx.base}/sagas">← all sagas</a></p>`,
  };
}

/** Every step's start, end, retries and compensation, in the order they happened. */
function timeline(saga: SagaDetail): Html {
  type Entry = { at: string; text: Html };
  const entries: Entry[] = [{ at: saga.createdAt, text: html`started` }];
  for (const step of saga.steps) {
    entries.push({
      at: step.startedAt,
      text: html`step <b>${step.name}</b> (${step.kind}) began${step.attempts > 1 ? html`, ${step.attempts} attempts` : ''}`,
    });
    if (step.completedAt)
      entries.push({
        at: step.completedAt,
        text: html`step <b>${step.name}</b> ${state('completed')}`,
      });
    if (step.state === 'failed' || (step.lastError && !step.completedAt))
      entries.push({
        at: step.retryAt ?? step.startedAt,
        text: html`step <b>${step.name}</b> ${state(step.state)}: <span class="mono">${step.lastError ?? ''}</span>`,
      });
    if (step.compensatedAt)
      entries.push({
        at: step.compensatedAt,
        text: html`step <b>${step.name}</b> ${state('compensated')}${step.compensationAttempts > 1 ? html` after ${step.compensationAttempts} attempts` : ''}`,
      });
  }
  if (saga.finishedAt) entries.push({ at: saga.finishedAt, text: html`${state(saga.state)}` });
  entries.sort((a, b) => a.at.localeCompare(b.at));
  return html`<ol class="timeline">${entries.map((e) => html`<li>${when(e.at)} — ${e.text}</li>`)}</ol>`;
}

const NOTICES: Record<string, { kind: 'ok'; text: string }> = {
  retried: { kind: 'ok', text: 'Retried: a worker resumes the saga where it got stuck.' },
  aborted: { kind: 'ok', text: 'Aborted: a worker compensates its completed steps, last first.' },
};

export async function retrySagaAction(ctx: PageContext, id: string): Promise<PageResult> {
  await retrySaga(ctx.db, id, { schema: ctx.schema });
  return { redirect: `/sagas/${encodeURIComponent(id)}?done=retried` };
}

export async function abortSagaAction(
  ctx: PageContext,
  id: string,
  form: URLSearchParams,
): Promise<PageResult> {
  await abortSaga(ctx.db, id, `${form.get('reason') ?? ''}`, { schema: ctx.schema });
  return { redirect: `/sagas/${encodeURIComponent(id)}?done=aborted` };
}
