import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelay, retryDelay } from '../src/core/backoff.ts';

/** The delay a failure count would get without jitter (the "full exponential"), capped. */
function fullDelay(baseMs: number, maxMs: number, attempt: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
}

const policy = fc
  .record({
    baseMs: fc.integer({ min: 1, max: 10_000 }),
    maxMs: fc.integer({ min: 1, max: 600_000 }),
  })
  .filter((p) => p.baseMs <= p.maxMs);
const randomUnit = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

describe('backoffDelay', () => {
  it('lies between half and all of the capped exponential delay', () => {
    fc.assert(
      fc.property(policy, fc.integer({ min: 1, max: 5_000 }), randomUnit, (p, attempt, r) => {
        const full = fullDelay(p.baseMs, p.maxMs, attempt);
        const delay = backoffDelay(p, attempt, () => r);
        expect(Number.isInteger(delay)).toBe(true);
        expect(delay).toBeGreaterThanOrEqual(full / 2);
        expect(delay).toBeLessThanOrEqual(full);
        expect(delay).toBeLessThanOrEqual(p.maxMs);
      }),
    );
  });

  it('hits both ends of the range with the extreme random values', () => {
    const p = { baseMs: 100, maxMs: 10_000 };
    expect(backoffDelay(p, 1, () => 0)).toBe(50);
    expect(backoffDelay(p, 1, () => 0.999999)).toBe(100);
    expect(backoffDelay(p, 3, () => 0)).toBe(200);
    expect(backoffDelay(p, 3, () => 0.999999)).toBe(400);
  });

  it('doubles with each failure until the cap, then stays at the cap', () => {
    const p = { baseMs: 100, maxMs: 1_000 };
    const upper = [1, 2, 3, 4, 5, 6, 50, 2_000].map((a) => backoffDelay(p, a, () => 0.999999));
    expect(upper).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000]);
    const lower = [1, 2, 3, 4, 5, 6, 50, 2_000].map((a) => backoffDelay(p, a, () => 0));
    expect(lower).toEqual([50, 100, 200, 400, 500, 500, 500, 500]);
  });

  it('treats attempt 0 (and below) like the first failure', () => {
    const p = { baseMs: 100, maxMs: 1_000 };
    expect(backoffDelay(p, 0, () => 0.999999)).toBe(100);
    expect(backoffDelay(p, -3, () => 0)).toBe(50);
  });

  it('spreads retries out: different random draws give different delays', () => {
    const p = { baseMs: 1_000, maxMs: 60_000 };
    const delays = new Set([0, 0.25, 0.5, 0.75].map((r) => backoffDelay(p, 4, () => r)));
    expect(delays.size).toBe(4);
  });
});

describe('retryDelay', () => {
  const policy = { baseMs: 100, maxMs: 1_000 };
  it('is what the error asked for when that is a finite, non-negative number of ms, else the backoff', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.double(), fc.constant(undefined), fc.string()),
        fc.integer({ min: 1, max: 50 }),
        (asked, attempt) => {
          const error = Object.assign(new Error('x'), { retryAfterMs: asked });
          const fixed = () => 0.5;
          const expected =
            typeof asked === 'number' && Number.isFinite(asked) && asked >= 0
              ? asked
              : backoffDelay(policy, attempt, fixed);
          expect(retryDelay(error, policy, attempt, fixed)).toBe(expected);
        },
      ),
    );
  });
});
