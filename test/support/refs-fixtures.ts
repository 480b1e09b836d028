import { expect } from 'vitest';
import type { Executor } from '../../src/db/executor.ts';
import type { EntityState } from '../../src/references/definitions.ts';
import { eventually } from '../helpers.ts';
import type { TestService } from './services.ts';

/**
 * Shared pieces of the reference tests: the customers owner, replica reads,
 * the owner's outbox as a list of entity state events, and the final
 * consistency check (replica == owner for every id either side knows).
 */

export const CUSTOMERS_DDL =
  'CREATE TABLE customers (id text PRIMARY KEY, name text, address text, tier text, secret text)';

/** Declares `customer` (fields name, address, tier; name and address personal) on a service. */
export function declareCustomer(
  service: TestService,
  options: { restrictReferrers?: string[] } = {},
) {
  return service.baton.entity({
    name: 'customer',
    table: 'customers',
    key: 'id',
    fields: ['name', 'address', 'tier'],
    personal: ['name', 'address'],
    restrictReferrers: options.restrictReferrers,
  });
}

export interface ReplicaRowView {
  state: string;
  version: number;
  fields: Record<string, unknown>;
}

export async function replicaRow(
  service: TestService,
  entity: string,
  id: string | number,
): Promise<ReplicaRowView | undefined> {
  const r = await service.database.db.query<{
    state: string;
    version: string;
    fields: Record<string, unknown>;
  }>(`SELECT state, version, fields FROM baton.replica_${entity} WHERE id::text = $1`, [
    String(id),
  ]);
  const row = r.rows[0];
  return row && { state: row.state, version: Number(row.version), fields: row.fields };
}

export async function waitForReplica(
  service: TestService,
  entity: string,
  id: string | number,
  expected: { state: string; version?: number },
  timeoutMs?: number,
): Promise<ReplicaRowView> {
  let last: ReplicaRowView | undefined;
  await eventually(
    async () => {
      last = await replicaRow(service, entity, id);
      return (
        last?.state === expected.state &&
        (expected.version === undefined || last.version === expected.version)
      );
    },
    `${service.name}: replica_${entity} ${id} ${expected.state}${expected.version ? ` v${expected.version}` : ''} (last seen ${JSON.stringify(last)})`,
    timeoutMs,
  );
  return last as ReplicaRowView;
}

export interface StateEvent {
  version: number;
  state: EntityState;
}

/** The owner's entity state events for one id, in version order (read straight from its outbox). */
export async function stateEvents(
  owner: TestService,
  entity: string,
  id: string,
): Promise<StateEvent[]> {
  const r = await owner.database.db.query<{ version: string; payload: EntityState }>(
    `SELECT version, payload FROM baton.outbox WHERE type = $1 AND key = $2 ORDER BY version`,
    [`baton.entity.${entity}`, `${entity}:${id}`],
  );
  return r.rows.map((row) => ({ version: Number(row.version), state: row.payload }));
}

export async function count(exec: Executor, sql: string, params: unknown[] = []): Promise<number> {
  const r = await exec.query<{ n: string }>(`SELECT count(*) AS n FROM (${sql}) q`, params);
  return Number(r.rows[0]?.n);
}

/**
 * Replica == owner for every id the owner or the replica knows: same state
 * (active/deleting/deleted), same version, same fields. Waits until it holds
 * (the replica is eventually consistent), then asserts it.
 */
export async function expectConsistent(
  owner: TestService,
  referrer: TestService,
  entity: string,
  options: { anonymised?: boolean } = {},
): Promise<void> {
  const snapshot = async () => {
    const ids = new Set<string>();
    const def = (
      await owner.database.db.query<{ table_name: string; key_column: string }>(
        'SELECT table_name, key_column FROM baton.entities WHERE name = $1',
        [entity],
      )
    ).rows[0];
    if (!def) throw new Error(`${owner.name} owns no ${entity}`);
    for (const r of (
      await owner.database.db.query<{ id: string }>(
        `SELECT "${def.key_column}"::text AS id FROM ${def.table_name}`,
      )
    ).rows)
      ids.add(r.id);
    for (const r of (
      await owner.database.db.query<{ id: string }>(
        'SELECT id FROM baton.tombstones WHERE entity = $1',
        [entity],
      )
    ).rows)
      ids.add(r.id);
    for (const r of (
      await referrer.database.db.query<{ id: string }>(
        `SELECT id::text AS id FROM baton.replica_${entity}`,
      )
    ).rows)
      ids.add(r.id);
    const mismatches: string[] = [];
    const client = referrer.ownerClientOf(owner);
    for (const id of [...ids].sort()) {
      const o = await client.lookup(entity, id);
      const r = await replicaRow(referrer, entity, id);
      const ownerState = o.state === 'absent' ? undefined : o.state.toUpperCase();
      let fields = o.fields as Record<string, unknown>;
      if (options.anonymised && o.state === 'deleted') {
        fields = Object.fromEntries(
          Object.entries(fields).map(([k, v]) => [k, o.personal.includes(k) ? null : v]),
        );
      }
      const same =
        r !== undefined &&
        r.state === ownerState &&
        r.version === o.version &&
        JSON.stringify(sorted(r.fields)) === JSON.stringify(sorted(fields));
      if (!same) mismatches.push(`${id}: owner ${JSON.stringify(o)} replica ${JSON.stringify(r)}`);
    }
    return mismatches;
  };
  let last: string[] = [];
  await eventually(async () => {
    last = await snapshot();
    return last.length === 0;
  }, `${referrer.name} replica of ${entity} == ${owner.name}`).catch(() => {
    /* asserted below, with the differences */
  });
  expect(last).toEqual([]);
}

function sorted(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
}
