/** A small seeded PRNG (mulberry32), so a concurrent run can be described by its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(random: () => number, items: readonly T[]): T {
  const item = items[Math.floor(random() * items.length)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

/** Yields to the event loop for 0–`maxMs` ms, so concurrent loops interleave differently each run. */
export function jitter(random: () => number, maxMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.floor(random() * (maxMs + 1))));
}
