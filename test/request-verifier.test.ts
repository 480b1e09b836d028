import { describe, expect, it } from 'vitest';
import { authHeaders, RequestVerifier } from '../src/http/auth.ts';
import { MemoryNonces } from '../src/http/nonce-store.ts';

const SECRET = 'unit-secret-0123456789abcdef';
const PARTS = { method: 'GET', target: '/baton/events?after=0' };

/** A verifier with a 30 s window on a clock the test moves, and a signer on the same clock. */
function verifierAt(clock: { now: number }) {
  const nonces = new MemoryNonces();
  const verifier = new RequestVerifier(
    { type: 'hmac', secrets: [SECRET], windowSeconds: 30 },
    () => clock.now,
    nonces,
  );
  const sign = () => authHeaders({ type: 'hmac', secret: SECRET }, PARTS, clock.now);
  return { verifier, sign, nonces };
}

describe('RequestVerifier with nonces in memory', async () => {
  it('forgets nonces once their window has passed, and only then', async () => {
    const clock = { now: 1_000_000_000_000 };
    const { verifier, sign, nonces } = verifierAt(clock);
    const first = sign();
    expect(await verifier.verify(first, PARTS)).toBeUndefined();
    for (let i = 0; i < 999; i++) {
      clock.now += 10;
      expect(await verifier.verify(sign(), PARTS)).toBeUndefined();
    }
    expect(nonces.size).toBe(1000);
    // Still inside the first nonce's memory: its replay is refused however many came after it.
    clock.now += 20_000;
    expect(await verifier.verify(first, PARTS)).toMatch(/replayed request|signature expired/);
    expect(nonces.size).toBe(1000);
    // Two windows after the last one: a new request leaves only itself remembered.
    clock.now += 61_000;
    expect(await verifier.verify(sign(), PARTS)).toBeUndefined();
    expect(nonces.size).toBe(1);
  });

  it('forgets the oldest first: a nonce in the middle of the window is still refused', async () => {
    const clock = { now: 2_000_000_000_000 };
    const { verifier, sign, nonces } = verifierAt(clock);
    const early = sign();
    expect(await verifier.verify(early, PARTS)).toBeUndefined();
    clock.now += 25_000;
    const middle = sign();
    expect(await verifier.verify(middle, PARTS)).toBeUndefined();
    // The early one's memory (2 × 30 s) ends; the middle one's does not.
    clock.now += 40_000;
    expect(await verifier.verify(sign(), PARTS)).toBeUndefined();
    expect(nonces.size).toBe(2);
    clock.now -= 36_000; // back inside the middle request's signature window
    expect(await verifier.verify(middle, PARTS)).toMatch(/replayed request/);
  });
});
