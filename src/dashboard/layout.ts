import { createHash } from 'node:crypto';
import type { Database } from '../db/executor.ts';
import { Html, type HtmlValue, html, query } from './html.ts';
import type { LagHistory } from './lag-history.ts';

/** What every page is rendered with. */
export interface PageContext {
  db: Database;
  schema: string;
  schemaSql: string;
  service: string;
  /** The dashboard's base path, e.g. `/dashboard`. */
  base: string;
  url: URL;
  /** The session's CSRF token, put into every form. */
  csrf: string;
  history: LagHistory;
}

/** A page's answer: its title and body, or a redirect after an action. */
export type PageResult =
  | { title: string; body: Html; status?: number; notice?: Notice }
  | { redirect: string };

export interface Notice {
  kind: 'ok' | 'error';
  text: string;
}

/** The page's only style sheet: inline, allowed by its hash (no `unsafe-inline`, no script at all). */
const STYLE = `
:root { color-scheme: light dark; --line: #8884; --muted: #888; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; }
header { display: flex; gap: 1.2rem; align-items: baseline; padding: .6rem 1.2rem; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
header strong { font-size: 1.05rem; }
header nav a { margin-right: .9rem; }
header form { margin-left: auto; }
main { padding: 1rem 1.2rem 3rem; max-width: 1400px; }
h1 { font-size: 1.3rem; margin: .2rem 0 1rem; }
h2 { font-size: 1.05rem; margin: 1.6rem 0 .5rem; }
table { border-collapse: collapse; width: 100%; margin-bottom: .6rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #8881; padding: .6rem; overflow: auto; max-height: 28rem; white-space: pre-wrap; word-break: break-all; }
code, pre, .mono { font-family: ui-monospace, monospace; font-size: 12.5px; }
.muted { color: var(--muted); }
.state { display: inline-block; padding: 0 .4rem; border-radius: .6rem; border: 1px solid var(--line); font-size: 12px; }
.state-completed, .state-handled, .state-ok, .state-ACTIVE { color: var(--ok); }
.state-stuck, .state-dead, .state-failed, .state-bad, .state-DELETED { color: var(--bad); }
.state-compensating, .state-compensated, .state-pending, .state-warn, .state-DELETING, .state-UNVERIFIED { color: var(--warn); }
.notice { padding: .5rem .8rem; border: 1px solid var(--line); border-left: 4px solid var(--ok); margin-bottom: 1rem; }
.notice.error { border-left-color: var(--bad); }
.cards { display: flex; gap: .8rem; flex-wrap: wrap; margin-bottom: .6rem; }
.card { border: 1px solid var(--line); padding: .5rem .8rem; min-width: 9rem; }
.card b { display: block; font-size: 1.3rem; }
form.inline { display: inline; }
button { font: inherit; padding: .15rem .6rem; cursor: pointer; }
button.danger { color: var(--bad); }
.filters a { margin-right: .6rem; }
.filters a.on { font-weight: 700; }
ol.timeline { list-style: none; padding: 0; border-left: 2px solid var(--line); margin-left: .4rem; }
ol.timeline li { padding: .2rem 0 .5rem 1rem; }
svg.spark { vertical-align: middle; color: #3b82f6; }
`;

const STYLE_HASH = `sha256-${createHash('sha256').update(STYLE).digest('base64')}`;

/**
 * Headers on every answer of the dashboard: no script may run (there is
 * none), no frame may hold it, nothing is cached, nothing leaks in a referrer
 * to another site (`same-origin`, not `no-referrer`: with that, browsers send
 * `Origin: null` on the dashboard's own forms, and the origin check needs it).
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': `default-src 'none'; style-src '${STYLE_HASH}'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};

const NAV: readonly [string, string][] = [
  ['', 'Overview'],
  ['/dead-letters', 'Dead letters'],
  ['/sagas', 'Sagas'],
  ['/references', 'References'],
  ['/caretaker', 'Caretaker'],
];

/** A whole page: header with the service and navigation, the notice, the body. */
export function frame(
  ctx: Pick<PageContext, 'base' | 'service' | 'csrf'> | { base: string; service: string },
  title: string,
  body: Html,
  notice?: Notice,
): string {
  const signedIn = 'csrf' in ctx;
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · ${ctx.service} · Baton</title><style>${new Html(STYLE)}</style></head>
<body><header><strong>Baton · ${ctx.service}</strong>${
    signedIn
      ? html`<nav>${NAV.map(([path, label]) => html`<a href="${ctx.base}${path || '/'}">${label}</a>`)}</nav>
<form class="inline" method="post" action="${ctx.base}/logout"><input type="hidden" name="csrf" value="${ctx.csrf}"><button>Log out</button></form>`
      : ''
  }</header>
<main><h1>${title}</h1>${notice ? html`<div class="notice ${notice.kind === 'error' ? 'error' : ''}" role="status">${notice.text}</div>` : ''}${body}</main></body></html>`
    .text;
}

/** A button that POSTs `path` with the session's CSRF token (and more hidden fields). */
export function actionButton(
  ctx: PageContext,
  path: string,
  label: string,
  options: { danger?: boolean; fields?: Record<string, string> } = {},
): Html {
  const fields = Object.entries(options.fields ?? {}).map(
    ([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`,
  );
  return html`<form class="inline" method="post" action="${ctx.base}${path}"><input type="hidden" name="csrf" value="${ctx.csrf}">${fields}<button class="${options.danger ? 'danger' : ''}">${label}</button></form>`;
}

/** A state as a coloured label. */
export function state(text: string): Html {
  return html`<span class="state state-${text.replace(/[^A-Za-z-]/g, '')}">${text}</span>`;
}

/** A point in time: readable, with the exact value in `datetime`. */
export function when(iso: string | null | undefined): Html {
  if (!iso) return html`<span class="muted">—</span>`;
  return html`<time datetime="${iso}">${iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}</time>`;
}

/** A link to the next page of a list, when there is one. */
export function nextPage(
  ctx: PageContext,
  path: string,
  parameters: Record<string, string | undefined>,
  shown: number,
  total: number,
  pageSize: number,
): Html {
  const more =
    shown === pageSize
      ? html` · <a rel="next" href="${ctx.base}${path}${query(parameters)}">next page →</a>`
      : '';
  return html`<p class="muted">${shown} shown of ${total}${more}</p>`;
}

/** A table: header cells and rows of cells (a row of nothing says so). */
export function table(head: readonly string[], rows: readonly HtmlValue[][], empty: string): Html {
  if (rows.length === 0) return html`<p class="muted">${empty}</p>`;
  return html`<table><thead><tr>${head.map((h) => html`<th>${h}</th>`)}</tr></thead><tbody>${rows.map(
    (cells) => html`<tr>${cells.map((c) => html`<td>${c}</td>`)}</tr>`,
  )}</tbody></table>`;
}

/** Seconds as an operator reads them: 12 s, 4 min, 3 h. */
export function age(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}
