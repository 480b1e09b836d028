import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Executor,
  participantClient,
  type ReservationClient,
  RetryableError,
  saga,
  TerminalError,
} from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import { SECRET } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/**
 * Random saga shapes (2–5 steps: local, reserve, call) under random failure
 * injections — retryable failures that recover (some after the effect took
 * place, so only the transaction, the idempotency key or the barrier keeps it
 * single), a terminal failure at a random step (for a reservation sometimes
 * after its try went through), compensations and confirms that fail a few
 * times then recover. Every effect, in either database, is counted under
 * (saga, step, kind). Then: completed ⇒ every step's effect once and every
 * reservation confirmed once, nothing undone; compensated ⇒ exactly the
 * applied effects undone, once each, in reverse order of the steps.
 */
type Kind = 'local' | 'reserve' | 'call';

interface StepPlan {
  kind: Kind;
  /** Retryable failures before the step succeeds (after its effect, where it has one). */
  flaky: number;
  /** Failures of its compensation before it succeeds. */
  undoFlaky: number;
  /** Failures of its confirm (reservations) before it succeeds. */
  confirmFlaky: number;
  /** Reservations and calls failing for good: refused before, or after the try / the call went through. */
  refusal: 'refused' | 'after-try';
}

interface Plan {
  steps: StepPlan[];
  /** The step that fails for good, if any. */
  failAt: number | null;
}

const EFFECTS = `CREATE TABLE effects (
  saga_id text NOT NULL, step text NOT NULL, kind text NOT NULL, n int NOT NULL DEFAULT 1,
  at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (saga_id, step, kind))`;

function effect(tx: Executor, sagaId: string, step: string, kind: string) {
  return tx.query(
    `INSERT INTO effects (saga_id, step, kind) VALUES ($1, $2, $3)
     ON CONFLICT (saga_id, step, kind) DO UPDATE SET n = effects.n + 1`,
    [sagaId, step, kind],
  );
}

/** Failure budgets, kept outside the saga function (it re-runs from the top on every resume). */
const spent = new Map<string, number>();
function shouldFail(what: string, budget: number): boolean {
  const used = spent.get(what) ?? 0;
  if (used >= budget) return false;
  spent.set(what, used + 1);
  return true;
}

const FAST = { baseMs: 5, maxMs: 20 };

describe('sagas under random failures', () => {
  let orders: TestService;
  let loyalty: TestService;
  let worker: SagaWorker;

  beforeAll(async () => {
    orders = await startService('prop_orders');
    loyalty = await startService('prop_loyalty');
    await orders.database.db.query(EFFECTS);
    await loyalty.database.db.query(EFFECTS);
    type Ref = { sagaId: string; step: string; refuse?: boolean };
    loyalty.baton.participant.reservation<Ref, { held: string }>('thing', {
      try: async (tx, p) => {
        if (p.refuse) throw new TerminalError(`no ${p.step} for ${p.sagaId}`);
        await effect(tx, p.sagaId, p.step, 'do');
        return { held: p.step };
      },
      confirm: async (tx, p) => void (await effect(tx, p.sagaId, p.step, 'confirm')),
      cancel: async (tx, p) => void (await effect(tx, p.sagaId, p.step, 'undo')),
    });
    loyalty.baton.participant.action('apply', {
      run: async (tx, p: Ref) => {
        await effect(tx, p.sagaId, p.step, 'do');
        return { applied: p.step };
      },
      // Baton runs it only for a key that ran: an undo of a call that never ran is a no-op.
      undo: async (tx, p: Ref) => void (await effect(tx, p.sagaId, p.step, 'undo')),
    });
    const client = participantClient({
      name: 'loyalty',
      url: `${loyalty.server.url}/baton`,
      auth: { type: 'hmac', secret: SECRET },
    });
    const retry = { attempts: 4, backoff: FAST };

    orders.baton.sagas.define(
      saga(
        'shape',
        async (ctx, plan: Plan) => {
          const id = ctx.sagaId;
          for (const [i, p] of plan.steps.entries()) {
            const name = `s${i}`;
            const tag = `${id}:${name}`;
            const failsHere = plan.failAt === i;
            if (p.kind === 'local') {
              await ctx.step(
                name,
                async (tx) => {
                  await effect(tx, id, name, 'do');
                  // thrown after the effect: the step's transaction must take it back
                  if (shouldFail(`${tag}:do`, p.flaky)) throw new RetryableError('flaky');
                  if (failsHere) throw new TerminalError(`${name} fails for good`);
                },
                {
                  retry,
                  compensate: async (tx) => {
                    await effect(tx, id, name, 'undo');
                    if (shouldFail(`${tag}:undo`, p.undoFlaky)) throw new Error('undo flaky');
                  },
                },
              );
            } else if (p.kind === 'call') {
              const ref = { sagaId: id, step: name };
              await ctx.call(
                name,
                async (key) => {
                  if (failsHere && p.refusal === 'refused')
                    throw new TerminalError(`${name} fails for good`);
                  const result = await client.call('apply', ref, key);
                  // ran on the participant, but the saga sees a failure: it must still be undone
                  if (failsHere) throw new TerminalError(`${name} fails for good after it ran`);
                  // the answer is "lost": the call is repeated with the same key
                  if (shouldFail(`${tag}:do`, p.flaky)) throw new RetryableError('answer lost');
                  return result;
                },
                {
                  retry,
                  compensate: async (_result, _key, callKey) => {
                    await client.undo('apply', ref, callKey);
                    if (shouldFail(`${tag}:undo`, p.undoFlaky))
                      throw new RetryableError('undo answer lost');
                  },
                },
              );
            } else {
              const flakyClient: ReservationClient = {
                async reserve(op, resource, call) {
                  const answer = await client.reserve(op, resource, call);
                  if (op === 'try') {
                    if (shouldFail(`${tag}:do`, p.flaky)) throw new RetryableError('try lost');
                    if (failsHere && p.refusal === 'after-try')
                      throw new TerminalError(`${name} fails for good after its try`);
                  }
                  if (op === 'cancel' && shouldFail(`${tag}:undo`, p.undoFlaky))
                    throw new RetryableError('cancel lost');
                  if (op === 'confirm' && shouldFail(`${tag}:confirm`, p.confirmFlaky))
                    throw new RetryableError('confirm lost');
                  return answer;
                },
              };
              await ctx.reserve(
                name,
                flakyClient,
                'thing',
                { sagaId: id, step: name, refuse: failsHere && p.refusal === 'refused' },
                { retry },
              );
            }
          }
          return { steps: plan.steps.length };
        },
        { compensationBackoff: FAST, maxCompensationAttempts: 10 },
      ),
    );
    worker = orders.baton.sagas.worker({ concurrency: 2, pollIntervalMs: 10 });
    worker.start();
  });
  afterAll(async () => {
    await worker?.stop();
    await orders?.stop();
    await loyalty?.stop();
  });

  const stepPlan: fc.Arbitrary<StepPlan> = fc.record({
    kind: fc.constantFrom<Kind>('local', 'reserve', 'call'),
    flaky: fc.nat(2),
    undoFlaky: fc.nat(2),
    confirmFlaky: fc.nat(2),
    refusal: fc.constantFrom<StepPlan['refusal']>('refused', 'after-try'),
  });
  const planArb: fc.Arbitrary<Plan> = fc
    .array(stepPlan, { minLength: 2, maxLength: 5 })
    .chain((steps) =>
      fc.record({
        steps: fc.constant(steps),
        failAt: fc.option(fc.nat(steps.length - 1), { nil: null }),
      }),
    );

  async function effectsOf(sagaId: string) {
    // microseconds of the one server's clock: both databases live on it
    const rows: { step: string; kind: string; n: number; us: string }[] = [];
    for (const service of [orders, loyalty]) {
      const r = await service.database.db.query<{
        step: string;
        kind: string;
        n: number;
        us: string;
      }>(
        'SELECT step, kind, n, (extract(epoch FROM at) * 1000000)::bigint::text AS us FROM effects WHERE saga_id = $1',
        [sagaId],
      );
      rows.push(...r.rows);
    }
    return rows;
  }

  it('ends consistent: all applied and confirmed, or everything applied undone once, in reverse', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(planArb, async (plan) => {
        const id = `prop-${++run}-${Date.now()}`;
        await orders.baton.sagas.start('shape', plan, { id });
        const status = await orders.baton.sagas.waitFor(id, 30_000);
        const effects = await effectsOf(id);
        const has = (i: number, kind: string) =>
          effects.some((e) => e.step === `s${i}` && e.kind === kind);

        // every effect at most once
        for (const e of effects) expect(e.n, `${e.step}:${e.kind}`).toBe(1);

        if (plan.failAt === null) {
          expect(status.state).toBe('completed');
          plan.steps.forEach((p, i) => {
            expect(has(i, 'do'), `s${i} applied`).toBe(true);
            expect(has(i, 'confirm'), `s${i} confirmed`).toBe(p.kind === 'reserve');
            expect(has(i, 'undo'), `s${i} not undone`).toBe(false);
          });
          return;
        }

        const failAt = plan.failAt;
        expect(status.state).toBe('compensated');
        expect(status.error).toMatch(new RegExp(`s${failAt}`));
        const failing = plan.steps[failAt] as StepPlan;
        // a reservation whose try went through, or a call that ran, before failing for good
        const appliedByFailure = failing.kind !== 'local' && failing.refusal === 'after-try';
        plan.steps.forEach((_p, i) => {
          const applied = i < failAt || (i === failAt && appliedByFailure);
          expect(has(i, 'do'), `s${i} applied`).toBe(applied);
          // undone exactly when applied (no undo of what never happened)
          expect(has(i, 'undo'), `s${i} undone`).toBe(applied);
          expect(has(i, 'confirm'), `s${i} never confirmed`).toBe(false);
        });
        // compensations in reverse order of the steps
        const undone = effects
          .filter((e) => e.kind === 'undo')
          .sort((a, b) => (BigInt(a.us) < BigInt(b.us) ? -1 : 1))
          .map((e) => Number(e.step.slice(1)));
        expect(undone).toEqual([...undone].sort((a, b) => b - a));
        expect(new Set(undone).size).toBe(undone.length);
        // the step records agree
        for (const s of status.steps) {
          const i = Number(s.name.slice(1));
          if (i < failAt) expect(s.state, s.name).toBe('compensated');
        }
      }),
      { numRuns: 25 },
    );
  }, 110_000);
});
