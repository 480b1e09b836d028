import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign as signWithKey,
  timingSafeEqual,
  verify as verifyWithKey,
} from 'node:crypto';
import { InvalidInputError } from '../core/errors.ts';
import { MemoryNonces, type NonceStore } from './nonce-store.ts';

/**
 * How a service's Baton endpoints authenticate their callers.
 *
 * - `keys` (per-service identity, recommended): every service signs with its
 *   own Ed25519 private key and names itself, the key's id and the service
 *   it calls; each service lists its peers' public keys by key id (several
 *   per peer to rotate them). A service holds no secret of any other: with
 *   one service's key an attacker can act only as that service, and only
 *   where it is allowed (`callers` on actions, reservations and endpoints).
 *   Chosen over per-peer HMAC keys: those need a secret per pair of
 *   services, each held by both.
 * - `hmac`: every service shares one secret; the caller signs `timestamp \n
 *   nonce \n METHOD \n path?query \n sha256(body)` (and the idempotency
 *   key, when it sends one) with HMAC-SHA256. Whoever holds the secret may
 *   act as any service: for one trust domain only.
 * - `bearer`: `Authorization: Bearer <token>`, one of the listed tokens (no
 *   replay protection: TLS only).
 *
 * Signed requests (`keys`, `hmac`) are accepted within `windowSeconds` of the
 * server's clock, and their nonce is remembered for that window (in the
 * service's database when it has one: every instance and every restart
 * refuses it), so a captured request cannot be replayed. Comparisons are
 * constant-time.
 */
export type ServerAuth =
  | {
      type: 'keys';
      /** This service's name: requests must be signed for it. Default: the Baton's `service`. */
      service?: string;
      /** The services that may call, each with its public keys (several while rotating). */
      peers: Readonly<Record<string, readonly PeerKey[]>>;
      windowSeconds?: number;
      /** This service's own key: when given, every answer is signed with it (callers check it). */
      keyId?: string;
      privateKey?: string;
    }
  | { type: 'hmac'; secrets: readonly string[]; windowSeconds?: number }
  | { type: 'bearer'; tokens: readonly string[] };

export type ClientAuth =
  | {
      type: 'keys';
      /** The calling service's name. */
      service: string;
      keyId: string;
      /** Ed25519 private key, PEM (PKCS#8). */
      privateKey: string;
      /**
       * The public keys of the services this one calls: when a called service
       * is listed, its answers must carry its signature over this request's
       * nonce, the status and the body — else they are refused as tampered.
       */
      peers?: Readonly<Record<string, readonly PeerKey[]>>;
    }
  | { type: 'hmac'; secret: string }
  | { type: 'bearer'; token: string };

/** A public key a service accepts from a peer. */
export interface PeerKey {
  keyId: string;
  /** Ed25519 public key, PEM (SPKI). */
  publicKey: string;
}

/**
 * A new Ed25519 key pair for `service`: `auth` for its own clients (keep the
 * private key secret), `publicKey` for the peers it calls (list it in their
 * `ServerAuth.peers[service]`).
 */
export function generateServiceKeys(
  service: string,
  keyId = `${service}-${new Date().toISOString().slice(0, 10)}`,
): { auth: Extract<ClientAuth, { type: 'keys' }>; publicKey: PeerKey } {
  const pair = generateKeyPairSync('ed25519');
  return {
    auth: {
      type: 'keys',
      service,
      keyId,
      privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    },
    publicKey: {
      keyId,
      publicKey: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    },
  };
}

export const HEADER_TIMESTAMP = 'x-baton-timestamp';
export const HEADER_NONCE = 'x-baton-nonce';
export const HEADER_SIGNATURE = 'x-baton-signature';
export const HEADER_CALLER = 'x-baton-caller';
export const HEADER_KEY_ID = 'x-baton-key-id';
export const HEADER_AUDIENCE = 'x-baton-audience';
export const HEADER_ANSWER_SIGNATURE = 'x-baton-answer-signature';
export const HEADER_ANSWER_KEY_ID = 'x-baton-answer-key-id';

export interface SignedParts {
  method: string;
  /** Path with query string, exactly as sent. */
  target: string;
  body?: string | Buffer;
  /** The receiving service's name (signed with `keys`). */
  audience?: string;
  /** The request's `Idempotency-Key`, if it sends one (signed). */
  idempotencyKey?: string;
}

const SERVICE_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,99}$/;
const KEY_ID = /^[A-Za-z0-9_.:-]{1,100}$/;

/** Headers to add to a request. */
export function authHeaders(
  auth: ClientAuth,
  parts: SignedParts,
  nowMs = Date.now(),
): Record<string, string> {
  if (auth.type === 'bearer') return { authorization: `Bearer ${auth.token}` };
  const timestamp = Math.floor(nowMs / 1000).toString();
  const nonce = randomBytes(16).toString('hex');
  if (auth.type === 'keys') {
    const audience = parts.audience ?? '';
    const identity = { caller: auth.service, keyId: auth.keyId, audience };
    const data = keysSigningString(identity, timestamp, nonce, parts);
    return {
      [HEADER_TIMESTAMP]: timestamp,
      [HEADER_NONCE]: nonce,
      [HEADER_CALLER]: auth.service,
      [HEADER_KEY_ID]: auth.keyId,
      [HEADER_AUDIENCE]: audience,
      [HEADER_SIGNATURE]: `v2=${signWithKey(null, data, privateKeyOf(auth.privateKey)).toString('base64url')}`,
    };
  }
  return {
    [HEADER_TIMESTAMP]: timestamp,
    [HEADER_NONCE]: nonce,
    [HEADER_SIGNATURE]: `v1=${sign(auth.secret, timestamp, nonce, parts)}`,
  };
}

function bodyHash(parts: SignedParts): string {
  return createHash('sha256')
    .update(parts.body ?? '')
    .digest('hex');
}

function sign(secret: string, timestamp: string, nonce: string, parts: SignedParts): string {
  // The idempotency key is appended only when sent: requests without one sign as before.
  const key = parts.idempotencyKey === undefined ? '' : `\n${parts.idempotencyKey}`;
  return createHmac('sha256', secret)
    .update(
      `${timestamp}\n${nonce}\n${parts.method.toUpperCase()}\n${parts.target}\n${bodyHash(parts)}${key}`,
    )
    .digest('hex');
}

/** What a `keys` signature covers: who signs with which key for whom, and the whole request. */
function keysSigningString(
  who: { caller: string; keyId: string; audience: string },
  timestamp: string,
  nonce: string,
  parts: SignedParts,
): Buffer {
  return Buffer.from(
    [
      'baton-v2',
      who.caller,
      who.keyId,
      who.audience,
      timestamp,
      nonce,
      parts.method.toUpperCase(),
      parts.target,
      bodyHash(parts),
      parts.idempotencyKey ?? '',
    ].join('\n'),
  );
}

/** Parsed keys, by their PEM: parsing costs more than signing. */
const privateKeys = new Map<string, KeyObject>();

function privateKeyOf(pem: string): KeyObject {
  let key = privateKeys.get(pem);
  if (!key) {
    try {
      key = createPrivateKey(pem);
    } catch {
      throw new InvalidInputError(
        'auth.privateKey must be an Ed25519 private key in PEM (PKCS#8).',
      );
    }
    if (key.asymmetricKeyType !== 'ed25519')
      throw new InvalidInputError('auth.privateKey must be an Ed25519 key.');
    if (privateKeys.size > 100) privateKeys.clear();
    privateKeys.set(pem, key);
  }
  return key;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function constantTimeEqual(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

/** What an answer's signature covers: who answers with which key, to which request, what. */
function answerSigningString(
  who: { responder: string; keyId: string; caller: string; nonce: string },
  status: number,
  body: string | Buffer,
): Buffer {
  const hash = createHash('sha256').update(body).digest('hex');
  return Buffer.from(
    ['baton-answer-v2', who.responder, who.keyId, who.caller, who.nonce, String(status), hash].join(
      '\n',
    ),
  );
}

/**
 * The headers that sign an answer (`keys` auth with this service's own key;
 * none otherwise), bound to the request's nonce and claimed caller: an old
 * answer cannot stand for a new request.
 */
export function answerHeaders(
  auth: ServerAuth,
  request: Readonly<Record<string, string | undefined>>,
  answer: { status: number; body: string },
): Record<string, string> {
  if (auth.type !== 'keys' || !auth.privateKey || !auth.keyId || !auth.service) return {};
  const data = answerSigningString(
    {
      responder: auth.service,
      keyId: auth.keyId,
      caller: request[HEADER_CALLER] ?? '',
      nonce: request[HEADER_NONCE] ?? '',
    },
    answer.status,
    answer.body,
  );
  return {
    [HEADER_ANSWER_KEY_ID]: auth.keyId,
    [HEADER_ANSWER_SIGNATURE]: `v2=${signWithKey(null, data, privateKeyOf(auth.privateKey)).toString('base64url')}`,
  };
}

/**
 * Why an answer from `peer` cannot be trusted, or undefined: with `keys`
 * auth listing the peer's public keys, the answer must be signed by one of
 * them over the request's nonce, its status and its body.
 */
export function answerProblem(
  auth: ClientAuth,
  peer: string,
  request: Readonly<Record<string, string>>,
  answer: { status: number; headers: { get(name: string): string | null }; body: Buffer },
): string | undefined {
  if (auth.type !== 'keys' || !auth.peers) return undefined;
  const keys = auth.peers[peer];
  if (!keys) return `no public key of ${peer} is listed (auth.peers) to check its answers`;
  const keyId = answer.headers.get(HEADER_ANSWER_KEY_ID) ?? '';
  const signature = answer.headers.get(HEADER_ANSWER_SIGNATURE) ?? '';
  const listed = keys.find((k) => k.keyId === keyId);
  if (!listed || !signature.startsWith('v2='))
    return `the answer is not signed by a listed key of ${peer}`;
  const given = Buffer.from(signature.slice(3), 'base64url');
  const data = answerSigningString(
    {
      responder: peer,
      keyId,
      caller: auth.service,
      nonce: request[HEADER_NONCE] ?? '',
    },
    answer.status,
    answer.body,
  );
  const ok = given.length === 64 && verifyWithKey(null, data, publicKeyOf(peer, listed), given);
  return ok
    ? undefined
    : `the answer's signature does not match: changed in transit, or not ${peer}'s answer to this request`;
}

/** Who sent an authenticated request (`keys`: the calling service; shared auth: unknown), or why it is refused. */
export type Authentication =
  | { caller: string | undefined }
  /**
   * `replayed`: the signature was valid but its nonce already used — a copy of
   * this very request arrived first (a network duplicate, or a replay), so it
   * may have run. Said only after the signature held: a stranger learns nothing.
   */
  | { refused: string; replayed?: true };

/** Checks requests against a `ServerAuth`; keeps the nonces seen within the window. */
export class RequestVerifier {
  private readonly windowSeconds: number;
  /** `keys`: caller → key id → public key. */
  private readonly peerKeys = new Map<string, Map<string, KeyObject>>();
  /** `keys`: this service's name, which requests must be signed for. */
  private readonly service: string | undefined;

  constructor(
    private readonly auth: ServerAuth,
    private readonly now: () => number = Date.now,
    /** Where accepted nonces are kept (default: this process's memory). */
    private readonly nonces: NonceStore = new MemoryNonces(),
  ) {
    validateServerAuth(auth);
    this.windowSeconds = auth.type === 'bearer' ? 0 : (auth.windowSeconds ?? 300);
    if (auth.type === 'keys') {
      this.service = auth.service;
      for (const [caller, keys] of Object.entries(auth.peers))
        this.peerKeys.set(caller, new Map(keys.map((k) => [k.keyId, publicKeyOf(caller, k)])));
    }
  }

  /** Returns undefined when authenticated, else the reason (for a 401; says what to fix, never leaks secrets). */
  async verify(
    headers: Readonly<Record<string, string | undefined>>,
    parts: SignedParts,
  ): Promise<string | undefined> {
    const verdict = await this.authenticate(headers, parts);
    return 'refused' in verdict ? verdict.refused : undefined;
  }

  /** Authenticates a request: who sent it, or why it is refused. */
  async authenticate(
    headers: Readonly<Record<string, string | undefined>>,
    parts: SignedParts,
  ): Promise<Authentication> {
    const auth = this.auth;
    if (auth.type === 'bearer') {
      const refused = this.verifyBearer(auth.tokens, headers.authorization);
      return refused ? { refused } : { caller: undefined };
    }
    const missing = this.credentialsMissing(headers);
    if (missing) return { refused: missing };
    const signed = { ...parts, idempotencyKey: headers['idempotency-key'] };
    const timestamp = headers[HEADER_TIMESTAMP] as string;
    const nonce = headers[HEADER_NONCE] as string;
    const signature = headers[HEADER_SIGNATURE] as string;
    let caller: string | undefined;
    if (auth.type === 'keys') {
      caller = headers[HEADER_CALLER] as string;
      const keyId = headers[HEADER_KEY_ID] as string;
      const audience = headers[HEADER_AUDIENCE] as string;
      const key = this.peerKeys.get(caller)?.get(keyId);
      const given = signature.startsWith('v2=')
        ? Buffer.from(signature.slice(3), 'base64url')
        : Buffer.alloc(0);
      const data = keysSigningString({ caller, keyId, audience }, timestamp, nonce, signed);
      if (!key || given.length !== 64 || !verifyWithKey(null, data, key, given))
        return {
          refused:
            'signature does not match: unknown caller or key id, another key, or the request was changed in transit',
        };
      if (audience !== this.service)
        return {
          refused: `request signed for ${JSON.stringify(audience)}, not for this service (${this.service})`,
        };
    } else {
      const given = signature.startsWith('v1=') ? signature.slice(3) : '';
      let ok = false;
      for (const secret of auth.secrets)
        ok = constantTimeEqual(given, sign(secret, timestamp, nonce, signed)) || ok;
      if (!ok)
        return {
          refused: 'signature does not match: wrong secret, or the request was changed in transit',
        };
    }
    // Only after the signature: a caller without the secret learns nothing of the server's clock.
    const skew = Math.abs(this.now() / 1000 - Number(timestamp));
    if (skew > this.windowSeconds) {
      return {
        refused: `signature expired: timestamp is ${Math.round(skew)} s away from the server clock (window ${this.windowSeconds} s); check the clocks`,
      };
    }
    const now = this.now();
    const fresh = await this.nonces.remember(nonce, now + 2 * this.windowSeconds * 1000, now);
    if (!fresh) return { refused: 'replayed request: this nonce was already used', replayed: true };
    return { caller };
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
    if (this.auth.type === 'keys') {
      const caller = headers[HEADER_CALLER];
      const keyId = headers[HEADER_KEY_ID];
      const audience = headers[HEADER_AUDIENCE];
      if (!caller || !keyId || audience === undefined)
        return `missing identity headers: send ${HEADER_CALLER}, ${HEADER_KEY_ID} and ${HEADER_AUDIENCE} (sign with per-service keys)`;
      if (!SERVICE_NAME.test(caller) || !KEY_ID.test(keyId) || !SERVICE_NAME.test(audience))
        return `${HEADER_CALLER}, ${HEADER_KEY_ID} or ${HEADER_AUDIENCE} is malformed`;
    }
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
}

const publicKeys = new Map<string, KeyObject>();

function publicKeyOf(caller: string, key: PeerKey): KeyObject {
  const known = publicKeys.get(key.publicKey);
  if (known) return known;
  let parsed: KeyObject;
  try {
    parsed = createPublicKey(key.publicKey);
  } catch {
    throw new InvalidInputError(
      `auth.peers.${caller}: key ${JSON.stringify(key.keyId)} is not a public key in PEM (SPKI).`,
    );
  }
  if (parsed.asymmetricKeyType !== 'ed25519')
    throw new InvalidInputError(
      `auth.peers.${caller}: key ${JSON.stringify(key.keyId)} must be an Ed25519 key.`,
    );
  if (publicKeys.size > 1000) publicKeys.clear();
  publicKeys.set(key.publicKey, parsed);
  return parsed;
}

function validateServerAuth(auth: ServerAuth): void {
  if (auth?.type === 'keys') {
    if (typeof auth.service !== 'string' || !SERVICE_NAME.test(auth.service))
      throw new InvalidInputError(
        'auth.service must name this service (requests are signed for it); Baton fills it in from its own `service`.',
      );
    if ((auth.privateKey === undefined) !== (auth.keyId === undefined))
      throw new InvalidInputError(
        "auth.keyId and auth.privateKey go together: this service's own key, to sign its answers.",
      );
    if (auth.privateKey !== undefined) {
      if (!KEY_ID.test(auth.keyId as string))
        throw new InvalidInputError('auth.keyId must be 1–100 characters [A-Za-z0-9_.:-].');
      privateKeyOf(auth.privateKey);
    }
    const peers = Object.entries(auth.peers ?? {});
    if (peers.length === 0)
      throw new InvalidInputError(
        'auth.peers must list at least one calling service with its public keys: { orders: [{ keyId, publicKey }] }.',
      );
    for (const [caller, keys] of peers) {
      if (!SERVICE_NAME.test(caller))
        throw new InvalidInputError(`auth.peers: ${JSON.stringify(caller)} is not a service name.`);
      if (!Array.isArray(keys) || keys.length === 0 || keys.some((k) => !KEY_ID.test(k?.keyId)))
        throw new InvalidInputError(
          `auth.peers.${caller} must be a list of { keyId, publicKey } with key ids of 1–100 characters [A-Za-z0-9_.:-].`,
        );
    }
    return;
  }
  const list =
    auth?.type === 'hmac' ? auth.secrets : auth?.type === 'bearer' ? auth.tokens : undefined;
  if (!list || list.length === 0 || list.some((s) => typeof s !== 'string' || s.length < 16)) {
    throw new InvalidInputError(
      'auth needs { type: "keys", peers: {...} }, { type: "hmac", secrets: [...] } or { type: "bearer", tokens: [...] } with at least one secret of 16 or more characters.',
    );
  }
}
