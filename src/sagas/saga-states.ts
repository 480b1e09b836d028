/**
 * A saga's life:
 *
 *   running ──function returned──────────────► completing ──reservations confirmed──► completed
 *   running ──function returned, no reservation to confirm──────────────────────────► completed
 *   running ──step failed for good / deadline / operator abort──► compensating
 *   compensating ──every completed step undone──► compensated
 *   completing | compensating ──a confirm / compensation failed past its bound──► stuck
 *   stuck ──operator: retry──► completing | compensating (from `stuck_from`)
 *   stuck ──operator: abort──► compensating
 *
 * running, completing and compensating are picked up by workers (also after a
 * crash: the lease expires); completed and compensated are terminal. A saga
 * with a key blocks later sagas of that key until it is terminal — stuck
 * included, so an operator decides before the key moves on.
 */
export const SAGA_STATES = [
  'running',
  'completing',
  'compensating',
  'completed',
  'compensated',
  'stuck',
] as const;
export type SagaState = (typeof SAGA_STATES)[number];

export const ACTIVE_SAGA_STATES: readonly SagaState[] = ['running', 'completing', 'compensating'];
export const TERMINAL_SAGA_STATES: readonly SagaState[] = ['completed', 'compensated'];

const TRANSITIONS: Readonly<Record<SagaState, readonly SagaState[]>> = {
  running: ['running', 'completing', 'compensating', 'completed'],
  completing: ['completing', 'completed', 'stuck'],
  compensating: ['compensating', 'compensated', 'stuck'],
  completed: [],
  compensated: [],
  stuck: ['completing', 'compensating'],
};

export function canTransition(from: SagaState, to: SagaState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Step records: pending (attempted, waiting to retry or for a reply/timer), completed, failed, compensated, confirmed. */
export const STEP_STATES = ['pending', 'completed', 'failed', 'compensated', 'confirmed'] as const;
export type StepState = (typeof STEP_STATES)[number];
export type StepKind = 'local' | 'call' | 'reserve' | 'command' | 'sleep';
