/**
 * Checks that a value survives the trip publisher → PostgreSQL jsonb → HTTP →
 * JavaScript consumer unchanged and harmless. Returns a reason, or undefined.
 *
 * - NUL characters and unpaired surrogates: jsonb cannot store them.
 * - Integers beyond ±(2^53−1): JavaScript would silently round them; send
 *   them as strings.
 * - `__proto__`, `constructor`, `prototype` keys: prototype-pollution vectors
 *   for any consumer that merges payloads into objects.
 * - Nesting deeper than `maxDepth`: protects parsers and stacks.
 * - Values JSON cannot represent (undefined in arrays, functions, bigint,
 *   NaN, Infinity, symbols).
 */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set([
  '__proto__',
  'constructor',
  'prototype',
]);

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function stringProblem(value: string, path: string): string | undefined {
  if (value.includes('\u0000')) return `${path}: string contains a NUL character (U+0000)`;
  if (LONE_SURROGATE.test(value))
    return `${path}: string contains an unpaired UTF-16 surrogate (not valid Unicode)`;
  return undefined;
}

export function findUnsafeJson(value: unknown, maxDepth = 64): string | undefined {
  return walk(value, '$', 0, maxDepth);
}

function walk(value: unknown, path: string, depth: number, maxDepth: number): string | undefined {
  if (depth > maxDepth) return `${path}: nested deeper than ${maxDepth} levels`;
  switch (typeof value) {
    case 'string':
      return stringProblem(value, path);
    case 'number':
      if (!Number.isFinite(value)) return `${path}: ${value} is not a JSON number`;
      if (Number.isInteger(value) && !Number.isSafeInteger(value)) {
        return `${path}: integer ${value} is beyond 2^53 and cannot be represented exactly; send it as a string`;
      }
      return undefined;
    case 'boolean':
      return undefined;
    case 'object': {
      if (value === null) return undefined;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const problem = walk(value[i], `${path}[${i}]`, depth + 1, maxDepth);
          if (problem) return problem;
        }
        return undefined;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        return `${path}: ${proto?.constructor?.name ?? 'object'} is not a plain JSON object`;
      }
      for (const key of Object.keys(value)) {
        if (FORBIDDEN_KEYS.has(key))
          return `${path}: key "${key}" is not allowed (prototype pollution)`;
        const keyProblem = stringProblem(key, `${path} (a key)`);
        if (keyProblem) return keyProblem;
        const problem = walk(
          (value as Record<string, unknown>)[key],
          `${path}.${key}`,
          depth + 1,
          maxDepth,
        );
        if (problem) return problem;
      }
      return undefined;
    }
    default:
      return `${path}: a ${typeof value} is not JSON`;
  }
}

/**
 * Parses JSON from an untrusted peer. Throws a SyntaxError with a clear
 * message for malformed text; otherwise returns the value and, if it is
 * unsafe (see `findUnsafeJson`), the reason.
 *
 * `JSON.parse` turns a `"__proto__"` key into an own property (never the
 * prototype), so parsing itself is safe; the check then refuses it.
 * Integers past 2^53 are detected after parsing: every such literal parses to
 * a number that is not a safe integer.
 */
export function parseUntrustedJson(text: string): { value: unknown; problem: string | undefined } {
  const value: unknown = JSON.parse(text);
  return { value, problem: findUnsafeJson(value) };
}
