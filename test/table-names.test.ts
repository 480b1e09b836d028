import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { derivedName, parseTableName, quoteLiteral } from '../src/db/sql.ts';

/** Table names as declarations write them, parsed back exactly; derived names that fit and stay apart. */
const part = fc
  .string({ unit: 'grapheme', minLength: 1, maxLength: 20 })
  .filter((s) => !s.includes('\u0000') && Buffer.byteLength(s) <= 63);
const write = (p: string, always: boolean) =>
  always || /[."]/.test(p) ? `"${p.replaceAll('"', '""')}"` : p;

describe('table names', () => {
  it('parse back to exactly the parts written, quoted or not (case kept)', () => {
    fc.assert(
      fc.property(
        fc.option(part, { nil: undefined }),
        part,
        fc.boolean(),
        (schema, name, quoteAll) => {
          const text =
            schema === undefined
              ? write(name, quoteAll)
              : `${write(schema, quoteAll)}.${write(name, quoteAll)}`;
          expect(parseTableName(text, 'table')).toEqual(
            schema === undefined ? { name } : { schema, name },
          );
        },
      ),
    );
  });

  it('refuse what is not a name, saying why', () => {
    for (const [text, why] of [
      ['', /it is empty/],
      ['a.b.c', /more than two parts/],
      ['a.', /a part is empty/],
      ['"a', /not closed/],
      ['"a"b', /followed by something other than a dot/],
      ['a"b', /double quote inside an unquoted part/],
      ['x'.repeat(64), /64 bytes, PostgreSQL keeps at most 63/],
    ] as const)
      expect(() => parseTableName(text, 'table'), text).toThrow(why);
  });
});

describe('derived names', () => {
  it('are the name itself when it fits in 63 bytes, else ≤ 63 bytes and distinct for distinct names', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 80 }),
        fc.string({ unit: 'grapheme', maxLength: 80 }),
        (a, b) => {
          const da = derivedName(`baton_ref_${a}`);
          expect(Buffer.byteLength(da)).toBeLessThanOrEqual(63);
          // Whole characters only: half a surrogate pair is refused by PostgreSQL's JSON.
          expect(wellFormed(da), JSON.stringify(da)).toBe(true);
          if (Buffer.byteLength(`baton_ref_${a}`) <= 63) expect(da).toBe(`baton_ref_${a}`);
          if (a !== b) expect(da).not.toBe(derivedName(`baton_ref_${b}`));
        },
      ),
    );
  });
});

it('cuts a long name between characters, never inside a surrogate pair (found by identifiers.prop)', () => {
  const name = derivedName(`baton_check_${'ﶴ𝅗𝅥𝅘𝅥𝅲🬍𝆺𝅥𝅯'.repeat(4)}callerl_d𑪜𘨲𝅘𝅥𝅱bindt`);
  expect(wellFormed(name), JSON.stringify(name)).toBe(true);
  expect(Buffer.byteLength(name)).toBeLessThanOrEqual(63);
});

/** No half of a surrogate pair: UTF-8 cannot hold one, so the round trip would change it. */
function wellFormed(text: string): boolean {
  return Buffer.from(text, 'utf8').toString('utf8') === text;
}

describe('literals', () => {
  it("double quotes and escape backslashes (E'…') so any setting of standard_conforming_strings reads them the same", () => {
    expect(quoteLiteral("it's")).toBe("'it''s'");
    expect(quoteLiteral('a\\b')).toBe("E'a\\\\b'");
  });
});
