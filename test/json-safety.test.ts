import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FORBIDDEN_KEYS, findUnsafeJson, parseUntrustedJson } from '../src/core/json-safety.ts';

/** Strings that survive jsonb: no NUL, no unpaired surrogates (full code points only). */
const safeString = fc
  .string({ unit: 'binary', maxLength: 12 })
  .filter((s) => !s.includes('\u0000'));
const safeKey = safeString.filter((k) => !FORBIDDEN_KEYS.has(k));
const safeNumber = fc.oneof(
  fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
  fc
    .double({ noNaN: true, noDefaultInfinity: true })
    .filter((d) => !Number.isInteger(d) || Number.isSafeInteger(d)),
);
const safeLeaf = fc.oneof(safeString, safeNumber, fc.boolean(), fc.constant(null));

/** Any JSON value Baton must accept. Objects are built with own properties, like JSON.parse does. */
const { safe } = fc.letrec<{ safe: unknown }>((tie) => ({
  safe: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    safeLeaf,
    fc.array(tie('safe'), { maxLength: 4 }),
    fc
      .uniqueArray(fc.tuple(safeKey, tie('safe')), { maxLength: 4, selector: ([k]) => k })
      .map((entries) => Object.fromEntries(entries)),
  ),
}));

function withOwnKey(entries: readonly (readonly [string, unknown])[], key: string, value: unknown) {
  const o: Record<string, unknown> = Object.fromEntries(entries.filter(([k]) => k !== key));
  // defineProperty: a plain assignment to "__proto__" would set the prototype instead.
  Object.defineProperty(o, key, { value, enumerable: true, configurable: true, writable: true });
  return o;
}

class Money {
  constructor(readonly cents: number) {}
}

/** One thing that must never pass, with whether it can be written as JSON text at all. */
const poisonJsonText = fc.oneof(
  fc.tuple(safeString, safeString).map(([a, b]) => `${a}\u0000${b}`),
  fc.constantFrom('\ud800', '\udbff', '\udc00', '\udfff', 'a\ud800b', '\udc00\ud800'),
  fc.constantFrom(2 ** 53, -(2 ** 53), 2 ** 53 + 2, 1e21, -1e300, Number.MAX_VALUE),
  fc.constantFrom(...FORBIDDEN_KEYS).chain((k) => safe.map((v) => withOwnKey([], k, v))),
  fc.constantFrom('a\u0000', '\ud800x').chain((k) => safe.map((v) => withOwnKey([], k, v))),
);
const poisonNotJson = fc.constantFrom<unknown>(
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  undefined,
  10n,
  () => 1,
  Symbol('s'),
  new Date(0),
  new Money(5),
  new Map([[1, 2]]),
  /regex/,
);

/** A safe value with exactly one poison somewhere inside it (at any depth and position). */
function poisoned(poison: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc.letrec<{ p: unknown }>((tie) => ({
    p: fc.oneof(
      { depthSize: 'small', maxDepth: 6 },
      poison,
      fc
        .tuple(fc.array(safe, { maxLength: 3 }), tie('p'), fc.array(safe, { maxLength: 3 }))
        .map(([before, p, after]) => [...before, p, ...after]),
      fc
        .tuple(
          fc.uniqueArray(fc.tuple(safeKey, safe), { maxLength: 3, selector: ([k]) => k }),
          safeKey,
          tie('p'),
        )
        .map(([entries, key, p]) => withOwnKey(entries, key, p)),
    ),
  })).p;
}

function nest(depth: number, leaf: unknown = 1): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? [v] : { a: v };
  return v;
}

describe('findUnsafeJson', () => {
  it('accepts every safe JSON value, and so does the parser after a round trip', () => {
    fc.assert(
      fc.property(safe, (value) => {
        expect(findUnsafeJson(value)).toBeUndefined();
        const parsed = parseUntrustedJson(JSON.stringify(value));
        expect(parsed.problem).toBeUndefined();
        expect(parsed.value).toEqual(JSON.parse(JSON.stringify(value)));
      }),
      { numRuns: 500 },
    );
  });

  it('finds a forbidden value injected anywhere', () => {
    fc.assert(
      fc.property(poisoned(fc.oneof(poisonJsonText, poisonNotJson)), (value) => {
        expect(findUnsafeJson(value)).toEqual(expect.any(String));
      }),
      { numRuns: 1_000 },
    );
  });

  it('finds it again after the value went through JSON text (what a hostile peer can send)', () => {
    fc.assert(
      fc.property(poisoned(poisonJsonText), (value) => {
        const parsed = parseUntrustedJson(JSON.stringify(value));
        expect(parsed.problem).toEqual(expect.any(String));
      }),
      { numRuns: 1_000 },
    );
  });

  it.each([
    ['$.a: string contains a NUL character', { a: 'x\u0000y' }],
    ['$[1]: string contains an unpaired UTF-16 surrogate', ['ok', '\ud800']],
    ['(a key): string contains an unpaired UTF-16 surrogate', { '\udc00': 1 }],
    ['$.n: integer 9007199254740992 is beyond 2^53', { n: 2 ** 53 }],
    ['key "__proto__" is not allowed', JSON.parse('{"__proto__":{"admin":true}}')],
    ['$.x: key "constructor" is not allowed', { x: { constructor: { prototype: {} } } }],
    ['key "prototype" is not allowed', { prototype: 1 }],
    ['$.d: Date is not a plain JSON object', { d: new Date(0) }],
    ['$.b: a bigint is not JSON', { b: 1n }],
    ['$.u: a undefined is not JSON', { u: undefined }],
    ['$[0]: NaN is not a JSON number', [Number.NaN]],
  ] as [string, unknown][])('names the reason and where: %s', (reason, value) => {
    expect(findUnsafeJson(value)).toContain(reason);
  });

  it('accepts surrogate pairs (emoji) and safe extremes', () => {
    expect(
      findUnsafeJson({
        s: '😀 \ud83d\ude00',
        k: Number.MAX_SAFE_INTEGER,
        m: -Number.MAX_SAFE_INTEGER,
      }),
    ).toBeUndefined();
    expect(findUnsafeJson({ f: 1.5e-300, g: 0.1, h: -0, i: 2 ** 52 + 0.5 })).toBeUndefined();
    // Every double of magnitude 2^53 or more is an integer, so large floats are refused too (by design).
    expect(findUnsafeJson({ f: 1.5e300 })).toMatch(/beyond 2\^53/);
    expect(findUnsafeJson(Object.create(null))).toBeUndefined();
  });

  it('limits nesting depth', () => {
    expect(findUnsafeJson(nest(64))).toBeUndefined();
    expect(findUnsafeJson(nest(65))).toMatch(/nested deeper than 64 levels/);
    expect(findUnsafeJson(nest(10), 5)).toMatch(/nested deeper than 5 levels/);
    // A hostile peer's deep nesting is refused without blowing the stack.
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    expect(parseUntrustedJson(deep).problem).toMatch(/nested deeper/);
  });
});

describe('parseUntrustedJson', () => {
  it('throws a SyntaxError for malformed text', () => {
    for (const text of ['', '{', '{"a":1,}', "{'a':1}", 'NaN', '[1 2]', '{"a":1}{"b":2}']) {
      expect(() => parseUntrustedJson(text)).toThrow(SyntaxError);
    }
  });

  it('never touches the prototype while parsing, and reports the pollution attempt', () => {
    const parsed = parseUntrustedJson(
      '{"__proto__":{"polluted":true},"a":{"constructor":{"prototype":{"polluted":true}}}}',
    );
    expect(parsed.problem).toMatch(/key "__proto__" is not allowed/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(parsed.value)).toBe(Object.prototype);
  });

  it('catches integers past 2^53 written literally, though JSON.parse rounds them', () => {
    expect(parseUntrustedJson('{"n":9007199254740993}').problem).toMatch(/beyond 2\^53/);
    expect(parseUntrustedJson('[-9007199254740993]').problem).toMatch(/beyond 2\^53/);
    expect(parseUntrustedJson('{"n":1e400}').problem).toMatch(/Infinity is not a JSON number/);
    expect(parseUntrustedJson('{"n":9007199254740991}').problem).toBeUndefined();
  });

  it('catches escaped NUL and lone surrogates', () => {
    expect(parseUntrustedJson('{"s":"a\\u0000b"}').problem).toMatch(/NUL/);
    expect(parseUntrustedJson('{"s":"\\ud800"}').problem).toMatch(/unpaired/);
    expect(parseUntrustedJson('{"\\udfff":1}').problem).toMatch(/unpaired/);
    expect(parseUntrustedJson('{"s":"\\ud83d\\ude00"}').problem).toBeUndefined();
  });
});
