import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { InvalidInputError } from '../core/errors.ts';

/**
 * Who may use the dashboard: an operator who typed one of the service's
 * operator tokens into its login form. What they get is a session cookie —
 * `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page
 * sends it) — holding a random id, its expiry and a MAC over both; and a
 * CSRF token, a MAC of the session id, that every form carries and every
 * POST must return. A session belongs to one service's dashboard (its name
 * and path are in the MAC): browsers send a host's cookies to every port of
 * it, so another service's dashboard on the same host — even with the same
 * token — does not take it. Nothing is stored but logouts (the session id, in
 * the service's database until the session would have expired): any
 * instance with the same tokens accepts a session, changing the tokens ends
 * every one.
 */
export interface OperatorCredentials {
  /** Tokens an operator may log in with (each at least 16 characters; several allow rotation). */
  tokens: readonly string[];
}

export interface Session {
  id: string;
  csrf: string;
  /** When the session ends (ms since the epoch). */
  expires: number;
}

const MIN_TOKEN_LENGTH = 16;
export const SESSION_COOKIE = 'baton_dashboard';

export class OperatorSessions {
  private readonly key: Buffer;
  private readonly tokens: Buffer[];

  /** The cookie's name: one per service, so an operator may be logged in to several on one host. */
  readonly cookieName: string;

  constructor(
    credentials: OperatorCredentials,
    private readonly lifetimeMs: number,
    private readonly now: () => number = Date.now,
    /** Whose dashboard: the service and its path (a session is good for this one only). */
    scope = 'baton\n/dashboard',
  ) {
    const tokens = credentials?.tokens;
    if (
      !Array.isArray(tokens) ||
      tokens.length === 0 ||
      tokens.some((t) => typeof t !== 'string' || t.length < MIN_TOKEN_LENGTH)
    ) {
      throw new InvalidInputError(
        `dashboard: operators.tokens must be a list of at least one token of ${MIN_TOKEN_LENGTH} or more characters (e.g. from \`openssl rand -hex 24\`); a short token can be guessed.`,
      );
    }
    // Hashed first, so comparing a login against each costs the same whatever its length.
    this.tokens = tokens.map(digest);
    this.key = createHmac('sha256', 'baton-dashboard-session')
      .update(`${scope}\n${[...tokens].sort().join('\n')}`)
      .digest();
    this.cookieName = `${SESSION_COOKIE}_${scope.split('\n')[0]?.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  }

  /** Whether `given` is one of the operator tokens (constant time per token). */
  tokenAccepted(given: string): boolean {
    const candidate = digest(given);
    let ok = false;
    for (const token of this.tokens) ok = timingSafeEqual(candidate, token) || ok;
    return ok;
  }

  /** A new session: the cookie's value and its lifetime in seconds. */
  open(): { cookie: string; maxAgeSeconds: number } {
    const id = randomBytes(18).toString('base64url');
    const expires = this.now() + this.lifetimeMs;
    return {
      cookie: `${id}.${expires}.${this.mac(`${id}.${expires}`)}`,
      maxAgeSeconds: Math.floor(this.lifetimeMs / 1000),
    };
  }

  /**
   * The session a cookie header carries, if it is ours, intact and not
   * expired. Every cookie of its name is tried: a page on another port of the
   * host may set one more (under a narrower path) to shadow it.
   */
  fromCookies(header: string | undefined): Session | undefined {
    for (const value of cookieValues(header, this.cookieName)) {
      const [id, expires, mac] = value.split('.');
      if (!id || !expires || !mac || !/^[0-9]{1,15}$/.test(expires)) continue;
      if (!safeEqual(mac, this.mac(`${id}.${expires}`))) continue;
      if (Number(expires) <= this.now()) continue;
      return { id, csrf: this.mac(`csrf.${id}`), expires: Number(expires) };
    }
    return undefined;
  }

  /** Whether a form's CSRF token belongs to this session. */
  csrfAccepted(session: Session, given: string | null): boolean {
    return given !== null && safeEqual(given, session.csrf);
  }

  private mac(text: string): string {
    return createHmac('sha256', this.key).update(text).digest('base64url');
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The values of every cookie of this name in a `Cookie` header. */
function cookieValues(header: string | undefined, name: string): string[] {
  const values: string[] = [];
  for (const part of header?.split(';') ?? []) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) values.push(part.slice(at + 1).trim());
  }
  return values;
}
