import { describe, expect, it } from 'vitest';
import { canTransition, INBOX_STATES, type InboxState } from '../src/messaging/inbox-states.ts';

/**
 * The life of an inbox entry, written out independently of the source so a
 * change to either shows up here:
 *   pending → handled | dead | pending (a failed attempt waiting for its retry)
 *   dead    → pending (operator retry) | discarded (operator discard)
 *   handled, discarded: final.
 */
const ALLOWED: ReadonlySet<string> = new Set([
  'pending→handled',
  'pending→dead',
  'pending→pending',
  'dead→pending',
  'dead→discarded',
]);

describe('inbox states', () => {
  it('lists exactly the four states the SQL CHECK lists', () => {
    expect([...INBOX_STATES].sort()).toEqual(['dead', 'discarded', 'handled', 'pending']);
  });

  const pairs = INBOX_STATES.flatMap((from) => INBOX_STATES.map((to) => [from, to] as const));
  it.each(pairs)('%s → %s is allowed exactly when the life cycle says so', (from, to) => {
    expect(canTransition(from, to)).toBe(ALLOWED.has(`${from}→${to}`));
  });

  it('walks every allowed transition and no other (all 16 pairs visited)', () => {
    const allowed = pairs.filter(([f, t]) => canTransition(f, t)).map(([f, t]) => `${f}→${t}`);
    expect(new Set(allowed)).toEqual(ALLOWED);
    expect(pairs).toHaveLength(16);
  });

  it('has final states that nothing leaves', () => {
    const finals = INBOX_STATES.filter((s) =>
      INBOX_STATES.every((t) => !canTransition(s, t)),
    ) as InboxState[];
    expect(finals.sort()).toEqual(['discarded', 'handled']);
  });

  it('lets every entry reach a final state from pending', () => {
    const reachable = new Set<InboxState>(['pending']);
    for (let changed = true; changed; ) {
      changed = false;
      for (const from of [...reachable])
        for (const to of INBOX_STATES)
          if (canTransition(from, to) && !reachable.has(to)) {
            reachable.add(to);
            changed = true;
          }
    }
    expect([...reachable].sort()).toEqual([...INBOX_STATES].sort());
  });
});
