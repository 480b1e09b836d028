import { parseUntrustedJson } from '../core/json-safety.ts';
import type { Database } from '../db/executor.ts';
import { errorResponse, type HttpResponseLike, jsonResponse } from '../http/http-types.ts';
import type { Route } from '../http/service-handler.ts';
import type { EntityOwner } from './entity-owner.ts';

/**
 * The owner's endpoints for referrers (behind the service's authentication):
 *
 *   GET  {base}/watermark                        → { position }: last relayed feed position (a cut for the caretaker)
 *   GET  {base}/entities/{entity}/{id}           → the entity's state, version and fields (or deleted / absent)
 *   POST {base}/entities/{entity}/{id}/announce  { above } → announces the state again at a version
 *        above `above` (a referrer's caretaker found a replica at a version the owner did not issue)
 *   GET  {base}/entities/{entity}?id={id}, POST {base}/entities/{entity}/announce?id={id}
 *        the same for the ids "." and "..", which no URL path can carry (every URL parser
 *        resolves them, percent-encoded too)
 */
export function entityRoutes(
  db: Database,
  schemaSql: string,
  owners: () => ReadonlyMap<string, EntityOwner>,
): Route[] {
  return [
    {
      method: 'GET',
      pattern: /^\/watermark$/,
      describe: '/watermark',
      async handle() {
        const r = await db.query<{ position: string }>(
          `SELECT last_seq::text AS position FROM ${schemaSql}.relay_state`,
        );
        return jsonResponse(200, { position: r.rows[0]?.position ?? '0' });
      },
    },
    {
      method: 'GET',
      pattern: /^\/entities\/([^/]+)\/([^/]+)$/,
      describe: '/entities/{entity}/{id}',
      handle: (match) => lookup(inPath(owners(), match)),
    },
    {
      method: 'GET',
      pattern: /^\/entities\/([^/]+)$/,
      describe: '/entities/{entity}?id={id}',
      handle: (match, url) => lookup(inQuery(owners(), match, url)),
    },
    {
      method: 'POST',
      pattern: /^\/entities\/([^/]+)\/([^/]+)\/announce$/,
      describe: '/entities/{entity}/{id}/announce',
      handle: (match, _url, request) => announce(inPath(owners(), match), request.body),
    },
    {
      method: 'POST',
      pattern: /^\/entities\/([^/]+)\/announce$/,
      describe: '/entities/{entity}/announce?id={id}',
      handle: (match, url, request) => announce(inQuery(owners(), match, url), request.body),
    },
  ];
}

/** A lookup of the resolved entity and id. */
async function lookup(target: Resolved): Promise<HttpResponseLike> {
  if ('response' in target) return target.response;
  try {
    return jsonResponse(200, await target.owner.lookup(target.id));
  } catch (error) {
    if (isCastError(error)) return jsonResponse(200, absent(target.owner, target.id));
    throw error;
  }
}

/** An announce of the resolved entity and id above the version in `body`. */
async function announce(target: Resolved, body: Buffer | undefined): Promise<HttpResponseLike> {
  if ('response' in target) return target.response;
  const above = announceAbove(body);
  if (above === undefined) {
    return errorResponse(
      400,
      'BATON_BAD_REQUEST',
      'the body must be {"above": <version>} with a version from 0 to 2^53',
    );
  }
  try {
    return jsonResponse(200, await target.owner.announce(target.id, above));
  } catch (error) {
    // An id that cannot be of the key's type names nothing this owner could announce.
    if (isCastError(error))
      return errorResponse(400, 'BATON_BAD_REQUEST', `"${target.id}" is not a valid id here`);
    throw error;
  }
}

type Resolved = { owner: EntityOwner; id: string } | { response: HttpResponseLike };

/** The entity and id named in the path. */
function inPath(owners: ReadonlyMap<string, EntityOwner>, match: RegExpExecArray): Resolved {
  return resolveEntity(owners, match[1] as string, () => decodeURIComponent(match[2] as string));
}

/** The entity named in the path, the id in `?id=` (for "." and ".."). */
function inQuery(
  owners: ReadonlyMap<string, EntityOwner>,
  match: RegExpExecArray,
  url: URL,
): Resolved {
  return resolveEntity(owners, match[1] as string, () => url.searchParams.get('id') ?? '');
}

/** The entity and id, or the 400/404 that says what is wrong. */
function resolveEntity(
  owners: ReadonlyMap<string, EntityOwner>,
  encodedEntity: string,
  readId: () => string,
): Resolved {
  let entity: string;
  let id: string;
  try {
    entity = decodeURIComponent(encodedEntity);
    id = readId();
  } catch {
    return {
      response: errorResponse(
        400,
        'BATON_BAD_REQUEST',
        'entity and id must be valid URL-encoded text',
      ),
    };
  }
  const owner = owners.get(entity);
  if (!owner) {
    return {
      response: errorResponse(
        404,
        'BATON_UNKNOWN_ENTITY',
        `this service owns no entity "${entity}" (it owns: ${[...owners.keys()].join(', ') || 'none'})`,
      ),
    };
  }
  if (id.length === 0 || id.length > 512 || id.includes('\u0000')) {
    return {
      response: errorResponse(400, 'BATON_BAD_REQUEST', 'id must be 1–512 characters without NUL'),
    };
  }
  return { owner, id };
}

/** The id cannot even be of the key's type (e.g. "abc" for an integer key). */
function isCastError(error: unknown): boolean {
  return (error as { code?: string }).code?.startsWith('22') === true;
}

function absent(owner: EntityOwner, id: string) {
  return {
    entity: owner.def.name,
    id,
    state: 'absent',
    version: 0,
    fields: {},
    personal: owner.def.personal,
  };
}

function announceAbove(body: Buffer | undefined): number | undefined {
  try {
    const { value, problem } = parseUntrustedJson((body ?? Buffer.alloc(0)).toString('utf8'));
    const above = (value as { above?: unknown } | null)?.above;
    if (problem || !Number.isSafeInteger(above) || (above as number) < 0) return undefined;
    return above as number;
  } catch {
    return undefined;
  }
}
