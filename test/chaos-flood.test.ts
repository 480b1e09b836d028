import { describe, expect, it } from 'vitest';
import { type FloodReport, floodContained } from '../examples/shop/chaos/flood.ts';

/** The chaos set's flood check fails on each way a flood can get through. */
describe('floodContained', () => {
  const contained: FloodReport = {
    service: 'customers',
    slowBodies: 300,
    idleConnections: 1_200,
    idleHeld: 976,
    rssBeforeMiB: 131,
    rssPeakMiB: 190,
    boundMiB: 160,
    servedDuring: 10,
    failedDuring: 0,
    servingAfter: true,
  };

  it('passes a contained flood', () => {
    expect(floodContained(contained)).toBe(true);
  });

  it.each([
    ['memory past the bound (300 bodies held: +300 MiB)', { rssPeakMiB: 131 + 300 }],
    ['more connections held than the cap', { idleHeld: 1_200 }],
    ['no legitimate read served during the flood', { servedDuring: 0, failedDuring: 10 }],
    ['not serving after it', { servingAfter: false }],
  ])('fails on %s', (_what, change) => {
    expect(floodContained({ ...contained, ...change })).toBe(false);
  });
});
