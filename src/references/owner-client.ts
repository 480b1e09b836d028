import type { ClientAuth } from '../http/auth.ts';
import { PeerError, type SignedClient, signedClient } from '../http/signed-client.ts';
import type { EntityLookup } from './definitions.ts';

/** How a referrer asks an entity's owner about it (signed HTTP). */
export interface OwnerClient {
  /** The owning service's name. */
  readonly name: string;
  /** Base URL of its Baton endpoints. */
  readonly url: string;
  /** The signed client under it (the caretaker reads the owner's set sides through it). */
  readonly client: SignedClient;
  lookup(entity: string, id: string): Promise<EntityLookup>;
  /**
   * Asks the owner to announce the entity's state again at a version above
   * `above` (see `EntityOwner.announce`); returns what it announced.
   */
  announce(entity: string, id: string, above: number): Promise<EntityLookup>;
  /** The owner's last relayed feed position: a cut for reconciliation. */
  watermark(): Promise<string>;
}

export interface OwnerClientOptions {
  /** Owning service name (as in its events' `source`). */
  name: string;
  /** Base URL of its Baton endpoints, e.g. `http://customers:8080/baton`. */
  url: string;
  auth: ClientAuth;
  timeoutMs?: number;
}

/**
 * The path of an entity's id (and of its `/announce`). The ids "." and ".."
 * go in the query: in a path every URL parser resolves them — encoded as
 * %2e too — and the request would reach another endpoint.
 */
function entityPath(entity: string, id: string, then = ''): string {
  const e = encodeURIComponent(entity);
  if (id === '.' || id === '..') return `entities/${e}${then}?id=${encodeURIComponent(id)}`;
  return `entities/${e}/${encodeURIComponent(id)}${then}`;
}

/**
 * An `OwnerClient` over the signed client: failures are its `PeerError`s
 * (network, timeouts, 5xx: retryable; a refusal or an answer that is not a
 * lookup: not).
 */
export function ownerClient(options: OwnerClientOptions): OwnerClient {
  const client = signedClient({
    name: `owner ${options.name}`,
    peer: options.name,
    url: options.url,
    auth: options.auth,
    timeoutMs: options.timeoutMs ?? 3_000,
  });

  /** A lookup's answer, checked. */
  function asLookup(b: Partial<EntityLookup> | null, what: string): EntityLookup {
    if (typeof b?.state !== 'string' || typeof b.version !== 'number') {
      throw new PeerError(
        'BATON_PEER_PROTOCOL',
        `owner ${options.name} ${what}: the answer is not a lookup: ${JSON.stringify(b).slice(0, 300)}`,
      );
    }
    return b as EntityLookup;
  }

  return {
    name: options.name,
    url: client.url,
    client,
    async lookup(entity, id) {
      const b = await client.json<Partial<EntityLookup>>('GET', entityPath(entity, id));
      return asLookup(b, `looking up ${entity} ${id}`);
    },
    async announce(entity, id, above) {
      const b = await client.json<Partial<EntityLookup>>(
        'POST',
        entityPath(entity, id, '/announce'),
        { body: { above } },
      );
      return asLookup(b, `announcing ${entity} ${id}`);
    },
    async watermark() {
      const b = await client.json<{ position?: unknown }>('GET', 'watermark');
      if (typeof b?.position !== 'string') {
        throw new PeerError('BATON_PEER_PROTOCOL', `owner ${options.name} gave no watermark`);
      }
      return b.position;
    },
  };
}
