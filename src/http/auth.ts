import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { InvalidInputError } from '../core/errors.ts';
import { MemoryNonces, type NonceStore } from './nonce-store.ts';

/**
 * How a feed (or any Baton HTTP endpoint) authenticates its callers.
 *
 * - `hmac`: the caller signs `timestamp \n nonce \n METHOD \n path?query \n
 *   sha256(body)` with a shared secret (HMAC-SHA256). The server accepts it
 *   within `windowSeconds` of its own clock and remembers the nonce for that
 *   window (in the service's database when it has one: every instance and
 *   every restart refuses it), so a captured request cannot be replayed. Several secrets may be
 *   listed to rotate them without downtime.
 * - `bearer`: `Authorization: Bearer <token>`, one of the listed tokens.
 *
 * Comparisons are constant-time (over SHA-256 digests, so lengths never leak).
 */
export type ServerAuth =
  | { type: 'hmac'; secrets: readonly string[]; windowSeconds?: number }
  | { type: 'bearer'; tokens: readonly string[] };

export type ClientAuth = { type: 'hmac'; secret: string } | { type: 'bearer'; token: string };

export const HEADER_TIMESTAMP = 'x-baton-timestamp';
export const HEADER_NONCE = 'x-baton-nonce';
export const HEADER_SIGNATURE = 'x-baton-signature';

export interface SignedParts {
  method: string;
  /** Path with query string, exactly as sent. */
  target: string;
  body?: string | Buffer;
}

/** Headers to add to a request. */
export function authHeaders(
  auth: ClientAuth,
  parts: SignedParts,
  nowMs = Date.now(),
): Record<string, string> {
  if (auth.type === 'bearer') return { authorization: `Bearer ${auth.token}` };
  const timestamp = Math.floor(nowMs / 1000).toString();
  const nonce = randomBytes(16).toString('hex');
  return {
    [HEADER_TIMESTAMP]: timestamp,
    [HEADER_NONCE]: nonce,
    [HEADER_SIGNATURE]: `v1=${sign(auth.secret, timestamp, nonce, parts)}`,
  };
}

function sign(secret: string, timestamp: string, nonce: string, parts: SignedParts): string {
  const bodyHash = createHash('sha256')
    .update(parts.body ?? '')
    .digest('hex');
  return createHmac('sha256', secret)
    .update(`${timestamp}\n${nonce}\n${parts.method.toUpperCase()}\n${parts.target}\n${bodyHash}`)
    .digest('hex');
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function constantTimeEqual(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

/** Checks requests against a `ServerAuth`; keeps the nonces seen within the window. */
export class RequestVerifier {
  private readonly windowSeconds: number;
  constructor(
    private readonly auth: ServerAuth,
    private readonly now: () => number = Date.now,
    /** Where accepted nonces are kept (default: this process's memory). */
    private readonly nonces: NonceStore = new MemoryNonces(),
  ) {
    validateServerAuth(auth);
    this.windowSeconds = auth.type === 'hmac' ? (auth.windowSeconds ?? 300) : 0;
  }

  /** Returns undefined when authenticated, else the reason (for a 401; says what to fix, never leaks secrets). */
  async verify(
    headers: Readonly<Record<string, string | undefined>>,
    parts: SignedParts,
  ): Promise<string | undefined> {
    return this.auth.type === 'bearer'
      ? this.verifyBearer(this.auth.tokens, headers.authorization)
      : this.verifyHmac(this.auth.secrets, headers, parts);
  }

  /**
   * Why a request cannot be authenticated whatever its body — credentials
   * missing or malformed — or undefined. Checked before a body is read; says
   * nothing a stranger could use (no clock, no secret).
   */
  credentialsMissing(headers: Readonly<Record<string, string | undefined>>): string | undefined {
    if (this.auth.type === 'bearer') {
      const header = headers.authorization;
      if (!header) return 'missing Authorization header: send "Authorization: Bearer <token>"';
      return /^Bearer .+$/i.test(header) ? undefined : 'Authorization header is not a bearer token';
    }
    const timestamp = headers[HEADER_TIMESTAMP];
    const nonce = headers[HEADER_NONCE];
    const signature = headers[HEADER_SIGNATURE];
    if (!timestamp || !nonce || !signature)
      return `missing signature headers: send ${HEADER_TIMESTAMP}, ${HEADER_NONCE} and ${HEADER_SIGNATURE}`;
    if (!/^\d{1,12}$/.test(timestamp)) return `${HEADER_TIMESTAMP} must be Unix seconds`;
    if (!/^[0-9a-f]{16,64}$/.test(nonce)) return `${HEADER_NONCE} must be 16–64 hex characters`;
    return undefined;
  }

  private verifyBearer(tokens: readonly string[], header: string | undefined): string | undefined {
    if (!header) return 'missing Authorization header: send "Authorization: Bearer <token>"';
    const match = /^Bearer (.+)$/i.exec(header);
    if (!match) return 'Authorization header is not a bearer token';
    const given = match[1] as string;
    let ok = false;
    for (const token of tokens) ok = constantTimeEqual(given, token) || ok;
    return ok ? undefined : 'bearer token not accepted';
  }

  private async verifyHmac(
    secrets: readonly string[],
    headers: Readonly<Record<string, string | undefined>>,
    parts: SignedParts,
  ): Promise<string | undefined> {
    const timestamp = headers[HEADER_TIMESTAMP];
    const nonce = headers[HEADER_NONCE];
    const signature = headers[HEADER_SIGNATURE];
    if (!timestamp || !nonce || !signature) {
      return `missing signature headers: send ${HEADER_TIMESTAMP}, ${HEADER_NONCE} and ${HEADER_SIGNATURE}`;
    }
    if (!/^\d{1,12}$/.test(timestamp)) return `${HEADER_TIMESTAMP} must be Unix seconds`;
    if (!/^[0-9a-f]{16,64}$/.test(nonce)) return `${HEADER_NONCE} must be 16–64 hex characters`;
    const given = signature.startsWith('v1=') ? signature.slice(3) : '';
    let ok = false;
    for (const secret of secrets)
      ok = constantTimeEqual(given, sign(secret, timestamp, nonce, parts)) || ok;
    if (!ok) return 'signature does not match: wrong secret, or the request was changed in transit';
    // Only after the signature: a caller without the secret learns nothing of the server's clock.
    const skew = Math.abs(this.now() / 1000 - Number(timestamp));
    if (skew > this.windowSeconds) {
      return `signature expired: timestamp is ${Math.round(skew)} s away from the server clock (window ${this.windowSeconds} s); check the clocks`;
    }
    const now = this.now();
    const fresh = await this.nonces.remember(nonce, now + 2 * this.windowSeconds * 1000, now);
    if (!fresh) return 'replayed request: this nonce was already used';
    return undefined;
  }
}

function validateServerAuth(auth: ServerAuth): void {
  const list =
    auth?.type === 'hmac' ? auth.secrets : auth?.type === 'bearer' ? auth.tokens : undefined;
  if (!list || list.length === 0 || list.some((s) => typeof s !== 'string' || s.length < 16)) {
    throw new InvalidInputError(
      'feed auth needs { type: "hmac", secrets: [...] } or { type: "bearer", tokens: [...] } with at least one secret of 16 or more characters.',
    );
  }
}
