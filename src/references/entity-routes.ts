import type { Database } from '../db/executor.ts';
import { errorResponse, jsonResponse } from '../http/http-types.ts';
import type { Route } from '../http/service-handler.ts';
import type { EntityOwner } from './entity-owner.ts';

/**
 * The owner's endpoints for referrers (behind the service's authentication):
 *
 *   GET {base}/watermark               → { position }: last relayed feed position (a cut for the caretaker)
 *   GET {base}/entities/{entity}/{id}  → the entity's state, version and fields (or deleted / absent)
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
        let entity: string;
        let id: string;
        try {
          entity = decodeURIComponent(match[1] as string);
          id = decodeURIComponent(match[2] as string);
        } catch {
          return errorResponse(
            400,
            'BATON_BAD_REQUEST',
            'entity and id must be valid URL-encoded text',
          );
        }
        const owner = owners().get(entity);
        if (!owner) {
          return errorResponse(
            404,
            'BATON_UNKNOWN_ENTITY',
            `this service owns no entity "${entity}" (it owns: ${[...owners().keys()].join(', ') || 'none'})`,
          );
        }
        if (id.length === 0 || id.length > 512 || id.includes('\u0000')) {
          return errorResponse(400, 'BATON_BAD_REQUEST', 'id must be 1–512 characters without NUL');
        }
        try {
          return jsonResponse(200, await owner.lookup(id));
        } catch (error) {
          if ((error as { code?: string }).code?.startsWith('22')) {
            // The id cannot even be of the key's type (e.g. "abc" for an integer key): it does not exist.
            return jsonResponse(200, {
              entity,
              id,
              state: 'absent',
              version: 0,
              fields: {},
              personal: owner.def.personal,
            });
          }
          throw error;
        }
      },
    },
  ];
}
