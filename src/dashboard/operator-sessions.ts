import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { InvalidInputError } from '../core/errors.ts';

/**
 * Who may use the dashboard: an operator who typed one of the service's
 * operator tokens into its login form. What they get is a session cookie —
 * `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page
 * sends it) — holding a random id, its expiry and a MAC over both; and a
 * CSRF token, a MAC of the session id, that every form carries and every
 * POST must return. Nothing is stored: any instance of the service with the
 * same tokens accepts the session, and changing the tokens ends every one.
 */
export interface OperatorCredentials {
  /** Tokens an operator may log in with (each at least 16 characters; several allow rotation). */
  tokens: readonly string[];
}

export interface Session {
  id: string;
  csrf: string;
}

const MIN_TOKEN_LENGTH = 16;
export const SESSION_COOKIE = 'baton_dashboard';

export class OperatorSessions {
  private readonly key: Buffer;
  private readonly tokens: Buffer[];

  constructor(
    credentials: OperatorCredentials,
    private readonly lifetimeMs: number,
    private readonly now: () => number = Date.now,
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
      .update([...tokens].sort().join('\n'))
      .digest();
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

  /** The session a cookie header carries, if it is ours, intact and not expired. */
  fromCookies(header: string | undefined): Session | undefined {
    const value = cookieValue(header, SESSION_COOKIE);
    const [id, expires, mac] = value?.split('.') ?? [];
    if (!id || !expires || !mac || !/^[0-9]{1,15}$/.test(expires)) return undefined;
    if (!safeEqual(mac, this.mac(`${id}.${expires}`))) return undefined;
    if (Number(expires) <= this.now()) return undefined;
    return { id, csrf: this.mac(`csrf.${id}`) };
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

/** One cookie's value from a `Cookie` header. */
function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}
