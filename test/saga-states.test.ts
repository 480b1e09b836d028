import { describe, expect, it } from 'vitest';
import {
  ACTIVE_SAGA_STATES,
  canTransition,
  SAGA_STATES,
  type SagaState,
  TERMINAL_SAGA_STATES,
} from '../src/sagas/saga-states.ts';

/** Every allowed move of a saga, as the protocol describes it; everything else is refused. */
const ALLOWED: readonly [SagaState, SagaState][] = [
  ['running', 'running'],
  ['running', 'completing'],
  ['running', 'compensating'],
  // The function returned with no reservation to confirm: done in one write.
  ['running', 'completed'],
  ['completing', 'completing'],
  ['completing', 'completed'],
  ['completing', 'stuck'],
  ['compensating', 'compensating'],
  ['compensating', 'compensated'],
  ['compensating', 'stuck'],
  ['stuck', 'completing'],
  ['stuck', 'compensating'],
];

function reachableFrom(start: SagaState): Set<SagaState> {
  const seen = new Set<SagaState>([start]);
  const queue = [start];
  while (queue.length > 0) {
    const from = queue.shift() as SagaState;
    for (const to of SAGA_STATES) {
      if (canTransition(from, to) && !seen.has(to)) {
        seen.add(to);
        queue.push(to);
      }
    }
  }
  return seen;
}

describe('saga states', () => {
  it('allows exactly the documented transitions', () => {
    for (const from of SAGA_STATES) {
      for (const to of SAGA_STATES) {
        const expected = ALLOWED.some(([f, t]) => f === from && t === to);
        expect(canTransition(from, to), `${from} → ${to}`).toBe(expected);
      }
    }
  });

  it('terminal states have no way out; active ones are exactly those workers pick up', () => {
    for (const state of TERMINAL_SAGA_STATES) {
      expect(SAGA_STATES.filter((to) => canTransition(state, to))).toEqual([]);
    }
    expect([...ACTIVE_SAGA_STATES].sort()).toEqual(['compensating', 'completing', 'running']);
    expect([...TERMINAL_SAGA_STATES].sort()).toEqual(['compensated', 'completed']);
    // stuck is neither: an operator moves it on.
    expect(ACTIVE_SAGA_STATES).not.toContain('stuck');
    expect(TERMINAL_SAGA_STATES).not.toContain('stuck');
  });

  it('a started saga can reach both endings, and every active state can still end', () => {
    expect(reachableFrom('running')).toEqual(new Set(SAGA_STATES));
    for (const state of [...ACTIVE_SAGA_STATES, 'stuck' as const]) {
      const reach = reachableFrom(state);
      expect(
        TERMINAL_SAGA_STATES.some((t) => reach.has(t)),
        `${state} can end`,
      ).toBe(true);
    }
  });

  it('once compensation or completion began, the saga never runs forward again', () => {
    for (const state of [
      'completing',
      'compensating',
      'stuck',
      'completed',
      'compensated',
    ] as const) {
      expect(reachableFrom(state).has('running'), `${state} ↛ running`).toBe(false);
    }
    // only through stuck (an operator's decision) can a completing saga end compensated
    expect(SAGA_STATES.filter((to) => canTransition('completing', to))).not.toContain(
      'compensating',
    );
    expect(SAGA_STATES.filter((to) => canTransition('compensating', to))).not.toContain(
      'completing',
    );
  });

  it('walks the two happy paths and the stuck detours', () => {
    const walks: SagaState[][] = [
      ['running', 'running', 'completing', 'completed'],
      ['running', 'compensating', 'compensating', 'compensated'],
      ['running', 'completing', 'stuck', 'completing', 'completed'],
      ['running', 'compensating', 'stuck', 'compensating', 'compensated'],
      ['running', 'completing', 'stuck', 'compensating', 'compensated'],
    ];
    for (const walk of walks) {
      for (let i = 1; i < walk.length; i++) {
        expect(
          canTransition(walk[i - 1] as SagaState, walk[i] as SagaState),
          walk.join(' → '),
        ).toBe(true);
      }
    }
  });
});
