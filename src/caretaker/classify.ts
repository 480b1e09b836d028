import type { EntityLookup } from '../references/definitions.ts';
import type { ReplicaRow } from '../references/replica-store.ts';

/**
 * What a difference between an owner and a replica turned out to be, after
 * re-reading both sides by point reads:
 *
 * - lost-upsert    the owner has the entity, the replica never got it → replay it
 * - stale-replica  both have it, the replica holds another version or state,
 *                  or different fields (edited by hand) → replay the owner's
 * - lost-delete    the owner deleted it (tombstone), the replica did not hear → apply the delete and its policies
 * - true-orphan    the replica has it, the owner has neither row nor tombstone → quarantine; apply the
 *                  delete once confirmed on two runs, or approved
 * - unverified     a reference was accepted while the owner was unreachable → verify now
 * - in-flight      equal on re-reading: it healed while we looked (an event was on its way)
 */
export const DIFFERENCE_CLASSES = [
  'lost-upsert',
  'stale-replica',
  'lost-delete',
  'true-orphan',
  'unverified',
  'in-flight',
] as const;
export type DifferenceClass = (typeof DIFFERENCE_CLASSES)[number];

export function classifyDifference(
  owner: EntityLookup,
  replica: ReplicaRow | undefined,
): DifferenceClass {
  if (replica?.state === 'UNVERIFIED') return 'unverified';
  if (owner.state === 'absent')
    return replica && replica.state !== 'DELETED' ? 'true-orphan' : 'in-flight';
  if (owner.state === 'deleted') {
    if (!replica) return 'lost-delete';
    return replica.state === 'DELETED' && replica.version >= owner.version
      ? 'in-flight'
      : 'lost-delete';
  }
  if (!replica) return 'lost-upsert';
  const expected = owner.state === 'active' ? 'ACTIVE' : 'DELETING';
  const same =
    replica.version === owner.version &&
    replica.state === expected &&
    sameJson(replica.fields, owner.fields);
  if (same) return 'in-flight';
  return replica.state === 'DELETED' && replica.version < owner.version
    ? 'lost-upsert'
    : 'stale-replica';
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, v]) => [k, sortKeys(v)]),
    );
  }
  return value;
}
