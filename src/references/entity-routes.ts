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
      async handle(match) {
        const target = resolveEntity(owners(), match);
        if ('response' in target) return target.response;
        try {
          return jsonResponse(200, await target.owner.lookup(target.id));
        } catch (error) {
          if (isCastError(error)) return jsonResponse(200, absent(target.owner, target.id));
          throw error;
        }
      },
    },
    {
      method: 'POST',
      pattern: /^\/entities\/([^/]+)\/([^/]+)\/announce$/,
      describe: '/entities/{entity}/{id}/announce',
      async handle(match, _url, request) {
        const target = resolveEntity(owners(), match);
        if ('response' in target) return target.response;
        const above = announceAbove(request.body);
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
      },
    },
  ];
}

type Resolved = { owner: EntityOwner; id: string } | { response: HttpResponseLike };

/** The entity and id named in a route's path, or the 400/404 that says what is wrong. */
function resolveEntity(owners: ReadonlyMap<string, EntityOwner>, match: RegExpExecArray): Resolved {
  let entity: string;
  let id: string;
  try {
    entity = decodeURIComponent(match[1] as string);
    id = decodeURIComponent(match[2] as string);
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
