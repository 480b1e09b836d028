import { InvalidInputError } from './errors.ts';

/**
 * How every part of Baton takes its options (after Temporal's
 * `WorkerOptions` → `CompiledWorkerOptions`): once, at the edge, a
 * `compile…Options` function applies the defaults, checks every value and
 * freezes the result; the inside only ever sees the compiled type.
 *
 * Defaults are applied key by key, and a key given as `undefined` takes its
 * default — `relay({ batchSize: undefined })` is the default batch size,
 * never `LIMIT NULL`.
 */
export function withDefaults<T extends object>(given: Partial<T> | undefined, defaults: T): T {
  const out: T = { ...defaults };
  for (const [key, value] of Object.entries(given ?? {})) {
    if (value !== undefined) (out as Record<string, unknown>)[key] = value;
  }
  return out;
}

/** Checks of single option values; each throws `InvalidInputError` naming the part, the option and the value. */
export const check = {
  /** An integer ≥ `min` (default 1). */
  integer(
    part: string,
    name: string,
    value: unknown,
    min = 1,
    max = Number.MAX_SAFE_INTEGER,
  ): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new InvalidInputError(
        `${part}: ${name} must be an integer from ${min} to ${max === Number.MAX_SAFE_INTEGER ? 'any' : max} (got ${show(value)}).`,
      );
    }
    return value;
  },
  /** A number of milliseconds ≥ `min` (default 0), finite. */
  ms(part: string, name: string, value: unknown, min = 0): number {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
      throw new InvalidInputError(
        `${part}: ${name} must be a number of milliseconds ≥ ${min} (got ${show(value)}).`,
      );
    }
    return value;
  },
  /** One of a list of words. */
  oneOf<T extends string>(part: string, name: string, value: unknown, allowed: readonly T[]): T {
    if (!allowed.includes(value as T)) {
      throw new InvalidInputError(
        `${part}: ${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')} (got ${show(value)}).`,
      );
    }
    return value as T;
  },
  /** A boolean. */
  flag(part: string, name: string, value: unknown): boolean {
    if (typeof value !== 'boolean') {
      throw new InvalidInputError(`${part}: ${name} must be true or false (got ${show(value)}).`);
    }
    return value;
  },
};

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 100));
  if (typeof value === 'number' || typeof value === 'boolean' || value === null)
    return String(value);
  return typeof value;
}
