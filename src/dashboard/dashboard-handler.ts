import { BatonError, InvalidInputError } from '../core/errors.ts';
import { noTelemetry, type Telemetry } from '../core/telemetry.ts';
import type { Database } from '../db/executor.ts';
import { schemaIdent } from '../db/sql.ts';
import type { HttpRequestLike, HttpResponseLike } from '../http/http-types.ts';
import { DatabaseNonces } from '../http/nonce-store.ts';
import type { RequestHead, ServiceHandler } from '../http/service-handler.ts';
import { caretakerPage, caretakerRunPage } from './caretaker-pages.ts';
import {
  deadLetterPage,
  deadLettersPage,
  discardDeadLetter,
  retryDeadLetter,
} from './dead-letter-pages.ts';
import { html } from './html.ts';
import { LagHistory } from './lag-history.ts';
import {
  frame,
  type Notice,
  type PageContext,
  type PageResult,
  SECURITY_HEADERS,
} from './layout.ts';
import { type OperatorCredentials, OperatorSessions, type Session } from './operator-sessions.ts';
import { overviewPage } from './overview-page.ts';
import {
  approveAllQuarantineAction,
  approveQuarantineAction,
  referencesPage,
} from './reference-pages.ts';
import { abortSagaAction, retrySagaAction, sagaPage, sagasPage } from './saga-pages.ts';

export interface DashboardOptions {
  db: Database;
  /** Schema holding Baton's tables. Default `baton`. */
  schema?: string;
  /** The service's name, in every page's title. */
  service: string;
  /** Who may log in: operator tokens (each ≥ 16 characters). */
  operators: OperatorCredentials;
  /** Where the pages live. Default `/dashboard`. */
  basePath?: string;
  /** Mark the session cookie `Secure` (the dashboard is served over HTTPS). Default false. */
  secureCookies?: boolean;
  /** How long a login lasts. Default 8 hours. */
  sessionMinutes?: number;
  /** How often lag is sampled for the charts. Default every 10 s. */
  sampleEveryMs?: number;
  /** Where answers are counted by route and status (the service's metrics). */
  telemetry?: Telemetry;
}

type Route = {
  method: 'GET' | 'POST';
  pattern: RegExp;
  describe: string;
  page: (ctx: PageContext, match: RegExpExecArray, form: URLSearchParams) => Promise<PageResult>;
};

const ID = '([^/]{1,200})';
const ROUTES: readonly Route[] = [
  { method: 'GET', pattern: /^\/?$/, describe: '/', page: (c) => overviewPage(c) },
  {
    method: 'GET',
    pattern: /^\/dead-letters$/,
    describe: '/dead-letters',
    page: (c) => deadLettersPage(c),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/dead-letters/${ID}$`),
    describe: '/dead-letters/{id}',
    page: (c, m) => deadLetterPage(c, arg(m)),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/dead-letters/${ID}/retry$`),
    describe: '/dead-letters/{id}/retry',
    page: (c, m) => retryDeadLetter(c, arg(m)),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/dead-letters/${ID}/discard$`),
    describe: '/dead-letters/{id}/discard',
    page: (c, m) => discardDeadLetter(c, arg(m)),
  },
  { method: 'GET', pattern: /^\/sagas$/, describe: '/sagas', page: (c) => sagasPage(c) },
  {
    method: 'GET',
    pattern: new RegExp(`^/sagas/${ID}$`),
    describe: '/sagas/{id}',
    page: (c, m) => sagaPage(c, arg(m)),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/sagas/${ID}/retry$`),
    describe: '/sagas/{id}/retry',
    page: (c, m) => retrySagaAction(c, arg(m)),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/sagas/${ID}/abort$`),
    describe: '/sagas/{id}/abort',
    page: (c, m, f) => abortSagaAction(c, arg(m), f),
  },
  {
    method: 'GET',
    pattern: /^\/references$/,
    describe: '/references',
    page: (c) => referencesPage(c),
  },
  {
    method: 'POST',
    pattern: /^\/quarantine\/approve-all$/,
    describe: '/quarantine/approve-all',
    page: (c) => approveAllQuarantineAction(c),
  },
  {
    method: 'POST',
    pattern: /^\/quarantine\/approve$/,
    describe: '/quarantine/approve',
    page: (c, _m, f) => approveQuarantineAction(c, f),
  },
  {
    method: 'GET',
    pattern: /^\/caretaker$/,
    describe: '/caretaker',
    page: (c) => caretakerPage(c),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/caretaker/${ID}$`),
    describe: '/caretaker/{id}',
    page: (c, m) => caretakerRunPage(c, arg(m)),
  },
];

/**
 * An id from the path: decoded, and refused (400) when malformed or holding
 * control characters or spaces — never passed on to a query or a header.
 */
function arg(match: RegExpExecArray): string {
  let id: string;
  try {
    id = decodeURIComponent(match[1] ?? '');
  } catch {
    throw new InvalidInputError('the id in the path is not valid percent-encoding.');
  }
  if (!/^[^\p{Cc}\p{Cf}\p{Z}\p{Cs}]+$/u.test(id))
    throw new InvalidInputError(
      'the id in the path holds spaces or control characters: no id does.',
    );
  return id;
}

/** Errors an operator can act on, by what they mean; anything else is the database (503). */
const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  BATON_INVALID_INPUT: 400,
  BATON_NOT_FOUND: 404,
  BATON_NOT_DEAD_LETTER: 409,
  BATON_UNDECODABLE_DEAD_LETTER: 409,
  BATON_SAGA_STATE: 409,
  BATON_SAGAS_NOT_INSTALLED: 404,
};

/**
 * The operator's dashboard of one service: server-rendered HTML pages (no
 * script, no build step) over Baton's tables in the service's database — the
 * relay and subscriptions with their lag, dead letters (browse, retry,
 * discard), sagas (filter, timeline, retry, abort), references (replicas,
 * restrict deletes and their votes, quarantine with approve) and the
 * caretaker's runs with their findings and invariants.
 *
 * Behind an operator's login (see `OperatorSessions`); every POST carries
 * the session's CSRF token and must come from the dashboard's own origin.
 * Every value from data is escaped (`html`). Lists are paged by keys, each
 * page one index range, so they stay fast on hundreds of thousands of rows.
 */
export function createDashboard(options: DashboardOptions): ServiceHandler {
  const basePath = (options.basePath ?? '/dashboard').replace(/\/$/, '');
  const schema = options.schema ?? 'baton';
  const schemaSql = schemaIdent(schema);
  const sessions = new OperatorSessions(
    options.operators,
    (options.sessionMinutes ?? 480) * 60_000,
    Date.now,
    `${options.service}\n${basePath}`,
  );
  // Logouts: the session id, kept until the session would have ended.
  const logouts = new DatabaseNonces(options.db, schemaSql);
  const loggedOut = (session: Session) => logouts.has(`dashboard-logout:${session.id}`, Date.now());
  const history = new LagHistory(options.db, schemaSql, options.sampleEveryMs ?? 10_000);
  history.start();
  const telemetry = options.telemetry ?? noTelemetry;
  const site = { base: basePath, service: options.service };

  const rest = (url: string): string | undefined => {
    const path = url.split('?')[0] ?? '';
    if (path === basePath) return '/';
    return path.startsWith(`${basePath}/`) ? path.slice(basePath.length) : undefined;
  };

  const answer = (
    status: number,
    body: string,
    headers: Record<string, string> = {},
  ): HttpResponseLike => ({
    status,
    headers: { 'content-type': 'text/html; charset=utf-8', ...SECURITY_HEADERS, ...headers },
    body,
  });
  const redirect = (to: string, headers: Record<string, string> = {}) =>
    answer(303, '', { location: `${basePath}${to}`, ...headers });
  const loginPage = (status: number, notice?: Notice) =>
    answer(
      status,
      frame(
        site,
        'Log in',
        html`<form method="post" action="${basePath}/login"><p><label>Operator token <input type="password" name="token" autocomplete="current-password" required autofocus></label></p><p><button>Log in</button></p></form><p class="muted">The operator token is in the service's configuration (never in a URL).</p>`,
        notice,
      ),
    );

  async function handle(request: HttpRequestLike): Promise<HttpResponseLike> {
    const path = rest(request.url);
    if (path === undefined)
      return answer(404, frame(site, 'Not found', html`<p>No such page.</p>`));
    if (request.method === 'GET' && path === '/login') return loginPage(200);
    if (request.method === 'POST' && path === '/login') return logIn(request);
    const carried = sessions.fromCookies(request.headers.cookie);
    const session = carried && !(await loggedOut(carried)) ? carried : undefined;
    if (!session) {
      return request.method === 'GET'
        ? redirect('/login')
        : loginPage(401, { kind: 'error', text: 'Your session has ended: log in again.' });
    }
    const form = request.method === 'POST' ? formOf(request) : new URLSearchParams();
    if (request.method === 'POST') {
      const refused =
        crossSite(request) ??
        (sessions.csrfAccepted(session, form.get('csrf'))
          ? undefined
          : 'the form is not from this session (CSRF token missing or wrong)');
      if (refused)
        return answer(
          403,
          frame(site, 'Refused', html`<p>Refused: ${refused}. Reload the page and try again.</p>`),
        );
      if (path === '/logout') {
        await logouts.remember(`dashboard-logout:${session.id}`, session.expires, Date.now());
        return redirect('/login', { 'set-cookie': cookie('', 0) });
      }
    }
    const routed = ROUTES.filter((r) => r.pattern.test(path));
    const route = routed.find((r) => r.method === request.method);
    if (!route)
      return routed.length > 0
        ? answer(
            405,
            frame(site, 'Not allowed', html`<p>This page does not answer ${request.method}.</p>`),
            { allow: routed.map((r) => r.method).join(', ') },
          )
        : answer(404, frame(site, 'Not found', html`<p>No such page.</p>`));
    return render(route, path, request, session, form);
  }

  async function render(
    route: Route,
    path: string,
    request: HttpRequestLike,
    session: Session,
    form: URLSearchParams,
  ): Promise<HttpResponseLike> {
    const ctx: PageContext = {
      db: options.db,
      schema,
      schemaSql,
      service: options.service,
      base: basePath,
      url: new URL(request.url, 'http://dashboard.invalid'),
      csrf: session.csrf,
      history,
    };
    try {
      const result = await route.page(ctx, route.pattern.exec(path) as RegExpExecArray, form);
      if ('redirect' in result) return redirect(result.redirect);
      return answer(result.status ?? 200, frame(ctx, result.title, result.body, result.notice));
    } catch (error) {
      // A value PostgreSQL refuses as data (SQLSTATE class 22: a NUL, a bad number) is bad input too.
      const badValue = String((error as { code?: unknown })?.code ?? '').startsWith('22');
      const known =
        error instanceof BatonError ? STATUS_BY_CODE[error.code] : badValue ? 400 : undefined;
      const text = known
        ? (error as Error).message
        : 'The service’s database did not answer; try again in a moment.';
      return answer(
        known ?? 503,
        frame(ctx, known === 404 ? 'Not found' : 'Could not do that', html``, {
          kind: 'error',
          text,
        }),
      );
    }
  }

  function logIn(request: HttpRequestLike): HttpResponseLike {
    const refused = crossSite(request);
    if (refused) return loginPage(403, { kind: 'error', text: `Refused: ${refused}.` });
    const token = formOf(request).get('token') ?? '';
    if (!sessions.tokenAccepted(token))
      return loginPage(401, {
        kind: 'error',
        text: 'That is not an operator token of this service.',
      });
    const opened = sessions.open();
    return redirect('/', { 'set-cookie': cookie(opened.cookie, opened.maxAgeSeconds) });
  }

  function cookie(value: string, maxAgeSeconds: number): string {
    return `${sessions.cookieName}=${value}; Path=${basePath}; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict${options.secureCookies ? '; Secure' : ''}`;
  }

  return {
    basePath,
    refuseEarly(head: RequestHead) {
      // A POST's body is read only for a login or an operator with a session.
      if (head.method !== 'POST' || rest(head.url) === undefined || rest(head.url) === '/login')
        return undefined;
      return sessions.fromCookies(head.headers.cookie)
        ? undefined
        : loginPage(401, { kind: 'error', text: 'Your session has ended: log in again.' });
    },
    async handle(request) {
      const started = performance.now();
      const response = await handle(request);
      const path = rest(request.url);
      const route =
        path === undefined
          ? undefined
          : ROUTES.find((r) => r.method === request.method && r.pattern.test(path));
      telemetry.answered(
        `${basePath}${route?.describe ?? (path === '/login' || path === '/logout' ? path : 'none')}`,
        request.method,
        response.status,
        (performance.now() - started) / 1000,
      );
      return response;
    },
    close: () => history.stop(),
  };
}

/** The form fields of a POST (`application/x-www-form-urlencoded`). */
function formOf(request: HttpRequestLike): URLSearchParams {
  return new URLSearchParams(request.body?.toString('utf8') ?? '');
}

/**
 * Why a POST is refused as coming from another site, or undefined: browsers
 * name where a form was sent from (`Origin`, `Sec-Fetch-Site`); it must be
 * this dashboard's own host. A client that names neither (curl) is judged by
 * the CSRF token alone.
 */
function crossSite(request: HttpRequestLike): string | undefined {
  const site = request.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none')
    return `sent from another site (${site})`;
  const origin = request.headers.origin;
  if (origin === undefined) return undefined;
  let host: string | undefined;
  try {
    host = new URL(origin).host;
  } catch {
    host = undefined;
  }
  return host !== undefined && host === request.headers.host
    ? undefined
    : 'sent from another origin';
}
