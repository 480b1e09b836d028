import { isUuid } from '../../src/index.ts';
import { type ApiRoute, json, problem, text } from './http-api.ts';
import type { ServiceBase } from './service-base.ts';

/**
 * customers: owns customers (name, address). Every change of the table —
 * through this API or plain SQL — is announced by Baton's entity trigger; a
 * registration also publishes `customer.registered` (loyalty opens an
 * account on it).
 */
export async function declareCustomers(base: ServiceBase): Promise<{ routes: ApiRoute[] }> {
  const { db, baton } = base;
  await db.query(`CREATE TABLE IF NOT EXISTS customers (
    id text PRIMARY KEY, name text NOT NULL, address text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
  // Every id ever registered, kept after the customer is deleted: the id is the
  // command's idempotency key, and a late duplicate of a registration (a client's
  // retry, a replay on the network) must not bring a deleted customer back.
  await db.query(`CREATE TABLE IF NOT EXISTS customer_registrations (
    id text PRIMARY KEY, registered_at timestamptz NOT NULL DEFAULT now())`);
  // The newest update applied to the customer (see PATCH below).
  await db.query('ALTER TABLE customers ADD COLUMN IF NOT EXISTS last_update uuid');
  baton.entity({
    name: 'customer',
    table: 'customers',
    key: 'id',
    fields: ['name', 'address'],
    personal: ['name', 'address'],
  });

  const routes: ApiRoute[] = [
    {
      // Register (idempotent by the client's id, for good: a repeat — even after the
      // customer was deleted — changes nothing and answers 200 with created: false).
      method: 'POST',
      pattern: /^\/customers$/,
      handle: async ({ body }) => {
        const id = text(body, 'id', 100);
        const name = text(body, 'name');
        const address = text(body, 'address');
        if (!id || !name || !address)
          return problem(400, 'send { id, name, address } (non-empty strings)');
        const created = await db.transaction(async (tx) => {
          const r = await tx.query(
            `WITH first_time AS (
               INSERT INTO customer_registrations (id) VALUES ($1) ON CONFLICT (id) DO NOTHING RETURNING id)
             INSERT INTO customers (id, name, address)
             SELECT $1, $2, $3 FROM first_time ON CONFLICT (id) DO NOTHING`,
            [id, name, address],
          );
          if (r.rowCount === 1) {
            await baton.publish(tx, {
              type: 'customer.registered',
              key: `customer:${id}`,
              payload: { id, name },
            });
          }
          return r.rowCount === 1;
        });
        return json(created ? 201 : 200, { id, created });
      },
    },
    {
      method: 'GET',
      pattern: /^\/customers\/([^/]+)$/,
      handle: async ({ params }) => {
        const r = await db.query('SELECT id, name, address FROM customers WHERE id = $1', [
          params[0],
        ]);
        return r.rows[0] ? json(200, r.rows[0]) : problem(404, `no customer ${params[0]}`);
      },
    },
    {
      // Update the address. An update may name itself with a time-ordered id
      // (`updateId`, a UUIDv7 the client makes when it decides on the change):
      // the newest update wins, and a late duplicate of an older one (a client's
      // retry, a replay on the network) changes nothing — 200 with applied: false.
      // Without an id the update is applied as it comes (last to arrive wins).
      method: 'PATCH',
      pattern: /^\/customers\/([^/]+)$/,
      handle: async ({ params, body }) => {
        const address = text(body, 'address');
        const updateId = (body as { updateId?: unknown } | null)?.updateId;
        if (!address) return problem(400, 'send { address } (a non-empty string)');
        if (updateId !== undefined && !isUuid(updateId))
          return problem(400, 'updateId must be a UUID (a UUIDv7: ids made later sort later)');
        const r = await db.query<{ applied: boolean }>(
          `WITH target AS (SELECT id FROM customers WHERE id = $1),
           changed AS (
             UPDATE customers SET address = $2, last_update = coalesce($3::uuid, last_update)
             WHERE id = $1 AND ($3::uuid IS NULL OR last_update IS NULL OR last_update < $3::uuid)
             RETURNING id)
           SELECT EXISTS (SELECT 1 FROM changed) AS applied FROM target`,
          [params[0], address, updateId ?? null],
        );
        const found = r.rows[0];
        return found
          ? json(200, { id: params[0], applied: found.applied })
          : problem(404, `no customer ${params[0]}`);
      },
    },
    {
      // Delete (idempotent: deleting a deleted customer answers 200 with deleted: false).
      method: 'DELETE',
      pattern: /^\/customers\/([^/]+)$/,
      handle: async ({ params }) => {
        const r = await db.query('DELETE FROM customers WHERE id = $1', [params[0]]);
        return json(200, { id: params[0], deleted: (r.rowCount ?? 0) > 0 });
      },
    },
  ];
  return { routes };
}
