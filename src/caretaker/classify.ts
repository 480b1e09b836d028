import type { EntityLookup } from '../references/definitions.ts';
import type { ReplicaRow } from '../references/replica-store.ts';

/**
 * What a difference between an owner and a replica turned out to be, after
 * re-reading both sides — the replica row locked first, then the owner
 * asked, so the owner's answer is at least as new as anything the replica
 * can have applied:
 *
 * - lost-upsert    the owner has the entity (alive), the replica never got it,
 *                  or holds it deleted at an older version (re-created) → apply the owner's state
 *                  (announced first if the owner never announced it: written with its trigger off)
 * - stale-replica  the replica holds an older version of a live entity → apply the owner's state
 * - lost-delete    the owner deleted it (tombstone), the replica holds an older version → apply the delete and its policies
 * - diverged       the replica holds the owner's version or a newer one, but other content (state
 *                  or fields), or a version the owner never issued: edited by hand, the owner
 *                  changed with its trigger off, or restored from an older backup → the owner
 *                  announces its state again above the replica's version, and that is applied
 *                  (a repair never moves a replica back to an older version)
 * - true-orphan    the replica holds it alive, the owner has neither row nor tombstone → quarantine;
 *                  once confirmed on two runs (or approved) the owner announces it deleted
 *                  (writing a tombstone) and the delete policy applies, as an apology
 * - unverified     a reference was accepted while the owner was unreachable → verify now: apply the
 *                  owner's state; if it never had the id, it announces it deleted and the policy
 *                  applies, as an apology
 * - in-flight      equal on re-reading: it healed while we looked (an event was on its way)
 */
export const DIFFERENCE_CLASSES = [
  'lost-upsert',
  'stale-replica',
  'lost-delete',
  'diverged',
  'true-orphan',
  'unverified',
  'in-flight',
] as const;
export type DifferenceClass = (typeof DIFFERENCE_CLASSES)[number];

/** How a difference is repaired. */
export type Repair =
  /** Nothing to do. */
  | 'none'
  /** Apply the owner's answer (newer than what the replica holds). */
  | 'apply'
  /** Ask the owner to announce its state above the replica's version, then apply that. */
  | 'announce';

export function classifyDifference(
  owner: EntityLookup,
  replica: ReplicaRow | undefined,
): { class: DifferenceClass; repair: Repair } {
  if (replica?.state === 'UNVERIFIED') {
    return { class: 'unverified', repair: owner.state === 'absent' ? 'announce' : 'apply' };
  }
  if (owner.state === 'absent') {
    if (!replica) return { class: 'in-flight', repair: 'none' };
    // A tombstone the owner does not have (the caretaker's own orphan repair of an
    // earlier version, or a tombstone removed by hand): the owner writes it again.
    if (replica.state === 'DELETED') return { class: 'diverged', repair: 'announce' };
    return { class: 'true-orphan', repair: 'announce' };
  }
  // An owner row that was never announced (written with its trigger off) has version 0:
  // it announces it, so that every referrer hears of it, not only this one.
  if (!replica && owner.version === 0) return { class: 'lost-upsert', repair: 'announce' };
  if (!replica || replica.version < owner.version) {
    const cls =
      owner.state === 'deleted'
        ? 'lost-delete'
        : !replica || replica.state === 'DELETED'
          ? 'lost-upsert'
          : 'stale-replica';
    return { class: cls, repair: 'apply' };
  }
  if (replica.version === owner.version && sameContent(owner, replica)) {
    return { class: 'in-flight', repair: 'none' };
  }
  return { class: 'diverged', repair: 'announce' };
}

/** Same state and — for a live entity — the same fields and personal fields. */
function sameContent(owner: EntityLookup, replica: ReplicaRow): boolean {
  const expected =
    owner.state === 'active' ? 'ACTIVE' : owner.state === 'deleting' ? 'DELETING' : 'DELETED';
  if (replica.state !== expected) return false;
  if (expected === 'DELETED') return true;
  return sameJson(replica.fields, owner.fields) && sameJson(replica.personal, owner.personal);
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
