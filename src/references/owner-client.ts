import { httpSetSide } from '../caretaker/http-set-side.ts';
import type { SetSide, SetSideTraffic } from '../caretaker/set-side.ts';
import { TransportError } from '../errors.ts';
import { authHeaders, type ClientAuth } from '../transports/http-feed/auth.ts';
import type { EntityLookup } from './definitions.ts';

/** How a referrer asks an entity's owner about it (authenticated HTTP). */
export interface OwnerClient {
  /** The owning service's name. */
  readonly name: string;
  /** Base URL of its Baton endpoints. */
  readonly url: string;
  /** The owner's (id, version) set of `entity`, for the caretaker (HTTP, bytes counted). */
  setSide(entity: string): SetSide & { traffic: SetSideTraffic };
  lookup(entity: string, id: string): Promise<EntityLookup>;
  /**
   * Asks the owner to announce the entity's state again at a version above
   * `above` (see `EntityOwner.announce`); returns what it announced.
   */
  announce(entity: string, id: string, above: number): Promise<EntityLookup>;
  /** The owner's last relayed feed position: a cut for reconciliation. */
  watermark(): Promise<string>;
  /** Signed POST of a JSON body to a path under the owner's base URL; counts bytes. */
  post(path: string, body: unknown): Promise<{ status: number; body: unknown; bytes: number }>;
}

export interface OwnerClientOptions {
  /** Owning service name (as in its events' `source`). */
  name: string;
  /** Base URL of its Baton endpoints, e.g. `http://customers:8080/baton`. */
  url: string;
  auth: ClientAuth;
  timeoutMs?: number;
}

function entityPath(entity: string, id: string): string {
  return `entities/${encodeURIComponent(entity)}/${encodeURIComponent(id)}`;
}

/**
 * An `OwnerClient` over HTTP. Failures (network, timeout, 5xx) throw a
 * retryable `TransportError`; a malformed answer throws a non-retryable one.
 */
export function ownerClient(options: OwnerClientOptions): OwnerClient {
  const base = new URL(options.url.replace(/\/?$/, '/'));
  const timeoutMs = options.timeoutMs ?? 3_000;

  async function call(method: 'GET' | 'POST', path: string, body?: unknown) {
    const url = new URL(path, base);
    const text = body === undefined ? undefined : JSON.stringify(body);
    const target = `${url.pathname}${url.search}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: {
          ...authHeaders(options.auth, { method, target, body: text }),
          ...(text ? { 'content-type': 'application/json' } : {}),
        },
        body: text,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      throw new TransportError(
        `owner ${options.name} at ${base.origin} did not answer: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const answer = await response.text();
    const bytes = (text?.length ?? 0) + target.length + answer.length;
    let parsed: unknown;
    try {
      parsed = JSON.parse(answer);
    } catch {
      throw new TransportError(
        `owner ${options.name} answered ${response.status} with a body that is not JSON`,
        { retryable: response.status >= 500 },
      );
    }
    if (response.status >= 500 || response.status === 429) {
      throw new TransportError(
        `owner ${options.name} answered ${response.status}: ${answer.slice(0, 300)}`,
      );
    }
    return { status: response.status, body: parsed, bytes };
  }

  /** A lookup's answer, checked; anything else is a non-retryable failure saying what came back. */
  function asLookup(r: { status: number; body: unknown }, what: string): EntityLookup {
    const b = r.body as Partial<EntityLookup>;
    if (r.status !== 200 || typeof b?.state !== 'string' || typeof b.version !== 'number') {
      throw new TransportError(
        `owner ${options.name} ${what}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`,
        { retryable: false },
      );
    }
    return b as EntityLookup;
  }

  return {
    name: options.name,
    url: base.toString().replace(/\/$/, ''),
    setSide: (entity) =>
      httpSetSide({
        url: new URL(`sets/${encodeURIComponent(entity)}`, base).toString(),
        auth: options.auth,
      }),
    async lookup(entity, id) {
      const r = await call('GET', entityPath(entity, id));
      return asLookup(r, `could not look up ${entity} ${id}`);
    },
    async announce(entity, id, above) {
      const r = await call('POST', `${entityPath(entity, id)}/announce`, { above });
      return asLookup(r, `could not announce ${entity} ${id}`);
    },
    async watermark() {
      const r = await call('GET', 'watermark');
      const position = (r.body as { position?: unknown })?.position;
      if (r.status !== 200 || typeof position !== 'string') {
        throw new TransportError(`owner ${options.name} gave no watermark: ${r.status}`, {
          retryable: false,
        });
      }
      return position;
    },
    post: (path, body) => call('POST', path, body),
  };
}
