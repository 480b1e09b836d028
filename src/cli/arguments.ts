import { InvalidArgumentError } from 'commander';

/** Parses a positive whole-number option (`--limit 100`); commander turns the error into a usage error (exit 2). */
export function positiveInteger(value: string): number {
  const n = Number(value);
  if (!(/^[0-9]+$/.test(value) && Number.isSafeInteger(n) && n >= 1)) {
    throw new InvalidArgumentError('expected a positive whole number.');
  }
  return n;
}
