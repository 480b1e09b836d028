import {
  discardDeadLetters,
  listDeadLetters,
  parseInboxId,
  retryDeadLetters,
  showDeadLetter,
} from '../messaging/dead-letters.ts';
import { readSubscriptions } from '../messaging/subscription-status.ts';
import { html, lines, query } from './html.ts';
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

/** Dead letters, oldest first, of all subscriptions or one; paged by inbox id. */
export async function deadLettersPage(ctx: PageContext): Promise<PageResult> {
  const subscription = ctx.url.searchParams.get('subscription') ?? undefined;
  const after = ctx.url.searchParams.get('after') ?? undefined;
  const list = await listDeadLetters(ctx.db, {
    schema: ctx.schema,
    subscription,
    after,
    limit: PAGE_SIZE,
  });
  const subscriptions = await readSubscriptions(ctx.db, ctx.schemaSql);
  const filters = html`<p class="filters">Subscription: <a class="${subscription ? '' : 'on'}" href="${ctx.base}/dead-letters">all</a>${subscriptions.map(
    (s) =>
      html`<a class="${s.name === subscription ? 'on' : ''}" href="${ctx.base}/dead-letters${query({ subscription: s.name })}">${s.name} (${s.deadLetters})</a>`,
  )}</p>`;
  const rows = list.deadLetters.map((d) => [
    html`<a href="${ctx.base}/dead-letters/${d.inboxId}">${d.inboxId}</a>`,
    d.subscription,
    d.type ?? html`<span class="muted">undecodable</span>`,
    html`<span class="mono">${d.key}</span>`,
    d.attempts,
    html`<span class="mono">${(d.lastError ?? '').slice(0, 160)}</span>`,
    when(d.receivedAt),
  ]);
  const last = list.deadLetters.at(-1)?.inboxId;
  return {
    title: 'Dead letters',
    body: html`${filters}${table(
      ['inbox id', 'subscription', 'type', 'key', 'attempts', 'last error', 'received'],
      rows,
      'No dead letters.',
    )}${nextPage(ctx, '/dead-letters', { subscription, after: last }, rows.length, list.total, PAGE_SIZE)}
<p class="muted">A dead letter holds back later events of its key (block-key). Retry it once its cause is fixed, or discard it to let its key go on.</p>`,
  };
}

/** One inbox entry: what it holds, why it failed, and what an operator may do with it. */
export async function deadLetterPage(ctx: PageContext, id: string): Promise<PageResult> {
  const d = await showDeadLetter(ctx.db, id, { schema: ctx.schema });
  const done = ctx.url.searchParams.get('done');
  const actions =
    d.status === 'dead'
      ? html`<p>${d.type === null ? '' : actionButton(ctx, `/dead-letters/${d.inboxId}/retry`, 'Retry')} ${actionButton(ctx, `/dead-letters/${d.inboxId}/discard`, 'Discard', { danger: true })}</p>`
      : '';
  const facts = table(
    ['field', 'value'],
    [
      ['status', state(d.status)],
      ['subscription', d.subscription],
      ['source', d.source ?? '—'],
      ['position', html`<span class="mono">${d.position}</span>`],
      ['event id', html`<span class="mono">${d.eventId ?? '—'}</span>`],
      ['type', d.type ?? 'undecodable'],
      ['key', html`<span class="mono">${d.key}</span>`],
      ['version', d.version ?? '—'],
      ['attempts', d.attempts],
      ['occurred', when(d.occurredAt)],
      ['received', when(d.receivedAt)],
      ['next attempt', when(d.nextAttemptAt)],
      ['handled', when(d.handledAt)],
    ],
    '',
  );
  return {
    title: `Inbox entry ${d.inboxId}`,
    notice: NOTICES[done ?? ''],
    body: html`${actions}${facts}<h2>Last error</h2><pre>${lines(d.lastError ?? '—')}</pre>
<h2>Payload</h2><pre>${lines(JSON.stringify(d.payload, null, 2) ?? 'null')}</pre>
${d.headers ? html`<h2>Headers</h2><pre>${lines(JSON.stringify(d.headers, null, 2))}</pre>` : ''}
${d.raw !== null ? html`<h2>Input as received (not decodable)</h2><pre>${lines(d.raw)}</pre>` : ''}
<p><a href="${ctx.base}/dead-letters">← all dead letters</a></p>`,
  };
}

const NOTICES: Record<string, { kind: 'ok'; text: string }> = {
  retried: {
    kind: 'ok',
    text: 'Retried: the entry is pending again; its consumer takes it at once.',
  },
  discarded: { kind: 'ok', text: 'Discarded: it will never be handled, and its key goes on.' },
};

export async function retryDeadLetter(ctx: PageContext, id: string): Promise<PageResult> {
  const inboxId = parseInboxId(id);
  await retryDeadLetters(ctx.db, { ids: [inboxId] }, { schema: ctx.schema });
  return { redirect: `/dead-letters/${inboxId}?done=retried` };
}

export async function discardDeadLetter(ctx: PageContext, id: string): Promise<PageResult> {
  const inboxId = parseInboxId(id);
  await discardDeadLetters(ctx.db, [inboxId], { schema: ctx.schema });
  return { redirect: `/dead-letters/${inboxId}?done=discarded` };
}
