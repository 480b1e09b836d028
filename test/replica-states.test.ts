import { describe, expect, it } from 'vitest';
import {
  canTransition,
  nextReplicaState,
  REFERENCEABLE,
  REPLICA_STATES,
  type ReplicaState,
  replicaStateOf,
} from '../src/references/replica-states.ts';

/**
 * A replica row's life, written out independently of the source so a change
 * to either shows up here ("none" = the replica never saw the id):
 *   none       → ACTIVE | UNVERIFIED | DELETING | DELETED
 *   UNVERIFIED → ACTIVE | DELETING | DELETED      (verified)
 *   ACTIVE, DELETING, DELETED → ACTIVE | DELETING | DELETED   (only at a higher version)
 *   nothing but none becomes UNVERIFIED.
 */
const FROM = ['none', ...REPLICA_STATES] as const;
const SEEN = ['ACTIVE', 'DELETING', 'DELETED'] as const;
const ALLOWED: ReadonlySet<string> = new Set([
  ...REPLICA_STATES.map((to) => `none→${to}`),
  ...['UNVERIFIED', ...SEEN].flatMap((from) => SEEN.map((to) => `${from}→${to}`)),
]);
const OBSERVED = ['active', 'deleting', 'deleted'] as const;

describe('replica states', () => {
  it('lists exactly the four states the replica tables CHECK', () => {
    expect([...REPLICA_STATES].sort()).toEqual(['ACTIVE', 'DELETED', 'DELETING', 'UNVERIFIED']);
  });

  it('accepts new references only in ACTIVE and UNVERIFIED', () => {
    expect(REPLICA_STATES.filter((s) => REFERENCEABLE.has(s)).sort()).toEqual([
      'ACTIVE',
      'UNVERIFIED',
    ]);
  });

  const pairs = FROM.flatMap((from) => REPLICA_STATES.map((to) => [from, to] as const));
  it.each(pairs)('%s → %s is allowed exactly when the life cycle says so', (from, to) => {
    expect(canTransition(from, to)).toBe(ALLOWED.has(`${from}→${to}`));
  });

  it('walks every allowed transition and no other (all 20 pairs visited)', () => {
    const allowed = pairs.filter(([f, t]) => canTransition(f, t)).map(([f, t]) => `${f}→${t}`);
    expect(new Set(allowed)).toEqual(ALLOWED);
    expect(pairs).toHaveLength(20);
  });

  it('maps each owner state to its replica state', () => {
    expect(OBSERVED.map(replicaStateOf)).toEqual(['ACTIVE', 'DELETING', 'DELETED']);
  });

  describe('applying an observation (max-version register)', () => {
    const cases = FROM.flatMap((from) =>
      OBSERVED.flatMap((observed) => [-1, 0, 1].map((delta) => [from, observed, delta] as const)),
    );
    it.each(cases)(
      'from %s, observing %s at version (current %+d)',
      (from: (typeof FROM)[number], observed, delta) => {
        const current = from === 'UNVERIFIED' ? 0 : 5;
        const before =
          from === 'none' ? undefined : { state: from as ReplicaState, version: current };
        const next = nextReplicaState(before, observed, current + delta);
        const takes = from === 'none' || from === 'UNVERIFIED' || delta > 0;
        if (!takes) {
          expect(next).toBeUndefined(); // duplicate or older: changes nothing
          return;
        }
        expect(next).toBe(replicaStateOf(observed));
        expect(canTransition(from, next as ReplicaState)).toBe(true);
      },
    );

    it('walks the documented story of one id and ignores every replay on the way', () => {
      type Step = [observed: (typeof OBSERVED)[number], version: number, expected: string];
      const story: Step[] = [
        ['active', 1, 'ACTIVE'], // created
        ['active', 2, 'ACTIVE'], // updated
        ['active', 1, 'ACTIVE'], // replay of v1: ignored
        ['deleting', 3, 'DELETING'], // restrict fence
        ['active', 4, 'ACTIVE'], // vetoed: active again
        ['deleting', 3, 'ACTIVE'], // the old fence replayed: ignored
        ['deleting', 5, 'DELETING'], // fenced again
        ['deleted', 6, 'DELETED'], // all prepared: tombstone
        ['active', 4, 'DELETED'], // an older active after the tombstone: the tombstone wins
        ['deleted', 6, 'DELETED'], // duplicate tombstone
        ['active', 7, 'ACTIVE'], // re-created by the owner
      ];
      let row: { state: ReplicaState; version: number } | undefined;
      const visited: string[] = [];
      for (const [observed, version, expected] of story) {
        const next = nextReplicaState(row, observed, version);
        if (next) {
          visited.push(`${row?.state ?? 'none'}→${next}`);
          expect(canTransition(row?.state ?? 'none', next)).toBe(true);
          row = { state: next, version };
        }
        expect(row?.state).toBe(expected);
      }
      expect(row).toEqual({ state: 'ACTIVE', version: 7 });
      expect(visited).toEqual([
        'none→ACTIVE',
        'ACTIVE→ACTIVE',
        'ACTIVE→DELETING',
        'DELETING→ACTIVE',
        'ACTIVE→DELETING',
        'DELETING→DELETED',
        'DELETED→ACTIVE',
      ]);
    });

    it('an UNVERIFIED placeholder (version 0) takes any observation, even version 0 or a tombstone', () => {
      const placeholder = { state: 'UNVERIFIED' as const, version: 0 };
      expect(nextReplicaState(placeholder, 'active', 1)).toBe('ACTIVE');
      expect(nextReplicaState(placeholder, 'deleted', 0)).toBe('DELETED');
      expect(nextReplicaState(placeholder, 'deleting', 3)).toBe('DELETING');
    });
  });
});
