import { readCaretakerStatus } from '../caretaker/status.ts';
import { readMessagingStatus } from '../messaging/status.ts';
import { readReferenceTablesStatus, referencesInstalled } from '../references/status.ts';
import { readSagasStatus } from '../sagas/status.ts';
import { html, query } from './html.ts';
import { sparkline } from './lag-history.ts';
import { age, type PageContext, type PageResult, state, table, when } from './layout.ts';

/**
 * The service at a glance: the relay and every subscription with their lag
 * over time, sagas by state, what waits for an operator (stuck sagas, dead
 * letters, quarantined orphans, restrict deletes), the caretaker's last run.
 */
export async function overviewPage(ctx: PageContext): Promise<PageResult> {
  const { db, schemaSql: s } = ctx;
  const messaging = await readMessagingStatus(db, s);
  ctx.history.recordIfDue(messaging);
  const sagas = await readSagasStatus(db, s);
  const references = (await referencesInstalled(db, s))
    ? { ...(await readReferenceTablesStatus(db, s)), ...(await readCaretakerStatus(db, s)) }
    : undefined;
  const samples = ctx.history.samples;
  const series = (pick: (sample: (typeof samples)[number]) => number | undefined) =>
    samples.map(pick).filter((v): v is number => v !== undefined);

  const relay = html`<div class="cards">
<div class="card">outbox backlog<b>${messaging.outbox.backlog}</b>${sparkline(
    series((x) => x.backlog),
    '',
  )}</div>
<div class="card">oldest unsequenced<b>${age(messaging.outbox.relayLagSeconds)}</b>${sparkline(
    series((x) => x.relayLagSeconds),
    ' s',
  )}</div>
<div class="card">last position<b>${messaging.outbox.lastSequenced}</b></div>
<div class="card">dead letters<b><a href="${ctx.base}/dead-letters">${messaging.deadLetters}</a></b></div></div>`;

  const subscriptions = table(
    [
      'subscription',
      'source',
      'cursor',
      'pending',
      'pending over time',
      'oldest pending',
      'age over time',
      'dead letters',
      'blocked keys',
      'state',
    ],
    messaging.subscriptions.map((sub) => [
      sub.name,
      sub.source,
      html`<span class="mono">${sub.cursor ?? '—'}</span>`,
      sub.pending,
      sparkline(
        series((x) => x.subscriptions[sub.name]?.pending),
        '',
      ),
      age(sub.oldestPendingAgeSeconds),
      sparkline(
        series((x) => x.subscriptions[sub.name]?.ageSeconds),
        ' s',
      ),
      sub.deadLetters > 0
        ? html`<a href="${ctx.base}/dead-letters${query({ subscription: sub.name })}">${sub.deadLetters}</a>`
        : '0',
      sub.blockedKeys,
      sub.stuck
        ? state('stuck')
        : sub.dataLoss.length > 0
          ? html`${state('bad')} data loss`
          : state('ok'),
    ]),
    'No subscriptions: this service consumes no feed.',
  );

  const sagaCards = sagas.installed
    ? html`<div class="cards">${Object.entries(sagas.counts).map(
        ([name, n]) =>
          html`<div class="card">${state(name)}<b><a href="${ctx.base}/sagas${query({ state: name })}">${n}</a></b></div>`,
      )}</div>
<p>Oldest active: ${
        sagas.oldestActive
          ? html`<a href="${ctx.base}/sagas/${encodeURIComponent(sagas.oldestActive.id)}">${sagas.oldestActive.name} ${sagas.oldestActive.id}</a>, ${age(sagas.oldestActive.ageSeconds)} (${sagas.oldestActive.waitingFor ?? sagas.oldestActive.state})`
          : html`<span class="muted">none</span>`
      }</p>`
    : html`<p class="muted">The saga tables are not installed here.</p>`;

  const last = references?.lastReconcile;
  const caretaker = references
    ? html`<p>Last run: ${
        last
          ? html`<a href="${ctx.base}/caretaker">${last.repair ? 'repairing' : 'dry'} run</a> finished ${when(last.finishedAt)} — ${last.differences} differences, ${last.repaired} repaired, ${last.quarantined} quarantined, ${last.invariantViolations} invariant violations, ${last.integrityProblems} integrity problems`
          : html`<span class="muted">never</span>`
      }</p>
<p>Waiting for an operator: <a href="${ctx.base}/references">${references.quarantine.total} quarantined orphans</a>, <a href="${ctx.base}/references">${references.pendingDeletes.total} restrict deletes waiting for votes</a>, <a href="${ctx.base}/sagas?state=stuck">${sagas.counts.stuck} stuck sagas</a>.</p>`
    : html`<p class="muted">The reference tables are not installed here.</p>`;

  return {
    title: 'Overview',
    body: html`<h2>Relay</h2>${relay}<h2>Subscriptions</h2>${subscriptions}<p class="muted">Lag over time: sampled while this dashboard runs; Prometheus keeps the long history (/metrics).</p><h2>Sagas</h2>${sagaCards}<h2>Caretaker and references</h2>${caretaker}`,
  };
}
