import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isUuid, uuidv7 } from '../src/core/uuid-v7.ts';

const FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function timestampOf(id: string): number {
  return Number.parseInt(id.replaceAll('-', '').slice(0, 12), 16);
}

/** UUIDs of one format compare like their 128-bit numbers when compared as lower-case strings. */
function assertStrictlyIncreasing(ids: readonly string[]): void {
  for (let i = 1; i < ids.length; i++) {
    if (!((ids[i - 1] as string) < (ids[i] as string))) {
      throw new Error(`id #${i} ${ids[i]} is not after ${ids[i - 1]}`);
    }
  }
}

// The generator keeps module state (last millisecond and tail), so tests in
// this file only move the injected clock forward, starting after the real one.
let clock = Date.now() + 60_000;

describe('uuidv7', () => {
  it('is increasing with the real clock too (default argument)', () => {
    // Runs first: later tests move the injected clock ahead of the real one.
    const ids = Array.from({ length: 5_000 }, () => uuidv7());
    assertStrictlyIncreasing(ids);
  });

  it('has the RFC 9562 layout: version 7, variant 10, and the millisecond in the first 48 bits', () => {
    for (let i = 0; i < 200; i++) {
      clock += 7;
      const id = uuidv7(clock);
      expect(id).toMatch(FORMAT);
      expect(isUuid(id)).toBe(true);
      expect(timestampOf(id)).toBe(clock);
      const bytes = Buffer.from(id.replaceAll('-', ''), 'hex');
      expect(bytes).toHaveLength(16);
      expect((bytes[6] as number) >> 4).toBe(0x7);
      expect((bytes[8] as number) >> 6).toBe(0b10);
    }
  });

  it('is strictly increasing across many ids minted in one millisecond', () => {
    clock += 1;
    const ids = Array.from({ length: 10_000 }, () => uuidv7(clock));
    assertStrictlyIncreasing(ids);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) {
      expect(id).toMatch(FORMAT);
      expect(timestampOf(id)).toBe(clock);
    }
  });

  it('stays strictly increasing when the clock goes backwards', () => {
    clock += 1_000;
    const first = uuidv7(clock);
    const earlier = [uuidv7(clock - 500), uuidv7(clock - 1), uuidv7(clock - 999)];
    assertStrictlyIncreasing([first, ...earlier]);
    for (const id of earlier) expect(timestampOf(id)).toBe(clock);
  });

  it('stays strictly increasing for any sequence of clock readings', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 1, maxLength: 300 }),
        (steps) => {
          const start = clock + 10;
          let now = start;
          const ids = steps.map((step) => {
            now += step;
            return uuidv7(now);
          });
          assertStrictlyIncreasing(ids);
          for (const id of ids) expect(id).toMatch(FORMAT);
          clock = Math.max(now, ...ids.map(timestampOf)) + 1;
        },
      ),
    );
  });

  it('recognises UUIDs and refuses everything else', () => {
    expect(isUuid('0190f5b2-5a6e-7c3d-8e4f-0123456789ab')).toBe(true);
    expect(isUuid('0190F5B2-5A6E-7C3D-8E4F-0123456789AB')).toBe(true);
    for (const bad of [
      '',
      'not-a-uuid',
      '0190f5b2-5a6e-7c3d-8e4f-0123456789a',
      '0190f5b2-5a6e-7c3d-8e4f-0123456789abc',
      '0190f5b25a6e7c3d8e4f0123456789ab',
      ' 0190f5b2-5a6e-7c3d-8e4f-0123456789ab',
      '0190f5b2-5a6e-7c3d-8e4f-0123456789ab\n',
      'g190f5b2-5a6e-7c3d-8e4f-0123456789ab',
      42,
      null,
      undefined,
      {},
    ]) {
      expect(isUuid(bad)).toBe(false);
    }
  });
});
