import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FieldColumn, ownerFieldsHashSql } from '../src/caretaker/fields-hash.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/*
 * The caretaker hashes an owner row's fields straight from its typed columns
 * and a replica's copy from the jsonb it holds. The two must agree for every
 * value a state event can carry: random rows of many column types go into an
 * owner table; their fields go the way an event takes them (the capture
 * trigger's to_jsonb, JSON, JavaScript's JSON.parse, back to jsonb); the
 * owner's hash and the replica's `fields_hash` must be equal — and a changed
 * value must change the replica's hash.
 */

let t: TestDatabase;
let columns: FieldColumn[];

const COLUMNS = `
  id serial PRIMARY KEY,
  "text" text, "varchar" varchar(20), "char" char(5), "uuid" uuid, "name with space" text,
  i2 smallint, i4 integer, i8 bigint, n numeric, n2 numeric(12,2), f4 real, f8 double precision,
  b boolean, ts timestamptz, d date, j jsonb, arr text[], mood mood`;

beforeAll(async () => {
  t = await freshDatabase('fields_hash');
  await t.db.query(`CREATE TYPE mood AS ENUM ('calm', 'über', 'it''s')`);
  await t.db.query(`CREATE TABLE owner_rows (${COLUMNS})`);
  const r = await t.db.query<FieldColumn>(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, typ.typtype
     FROM pg_attribute a JOIN pg_type typ ON typ.oid = a.atttypid
     WHERE attrelid = 'owner_rows'::regclass AND attnum > 0 AND attname <> 'id'`,
  );
  columns = r.rows;
});
afterAll(async () => {
  await t?.drop();
});

const text = fc.string({ unit: 'grapheme', maxLength: 12 }).filter((s) => !s.includes('\u0000'));
const bigNumeric = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(String),
  fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
  fc.constantFrom('1.50', '0.1', '1e400', '-1e400', '9007199254740993', 'NaN', '1e-400'),
);
const row = fc.record({
  text: fc.option(text),
  varchar: fc.option(text.map((s) => s.slice(0, 20))),
  char: fc.option(fc.constantFrom('a', 'ab   ', ' x', '')),
  uuid: fc.option(fc.uuid()),
  'name with space': fc.option(text),
  i2: fc.option(fc.integer({ min: -32768, max: 32767 })),
  i4: fc.option(fc.integer()),
  i8: fc.option(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String)),
  n: fc.option(bigNumeric),
  n2: fc.option(fc.double({ min: -1e9, max: 1e9, noNaN: true }).map((x) => x.toFixed(2))),
  f4: fc.option(
    fc.oneof(fc.float({ noNaN: true }).map(String), fc.constantFrom('NaN', 'Infinity')),
  ),
  f8: fc.option(
    fc.oneof(fc.double().map(String), fc.constantFrom('NaN', 'Infinity', '-Infinity', '-0')),
  ),
  b: fc.option(fc.boolean()),
  ts: fc.option(
    fc
      .date({ min: new Date('1900-01-01'), max: new Date('2200-01-01'), noInvalidDate: true })
      .map((d) => d.toISOString()),
  ),
  d: fc.option(fc.constantFrom('2026-12-02', '1999-01-31')),
  j: fc.option(fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v))),
  arr: fc.option(fc.array(text, { maxLength: 3 })),
  mood: fc.option(fc.constantFrom('calm', 'über', "it's")),
});

describe('the fields hash of an owner row and of its replica copy', () => {
  it('agree for every value a state event carries, and differ when a value changes', async () => {
    await fc.assert(
      fc.asyncProperty(row, async (values) => {
        const names = Object.keys(values);
        const inserted = await t.db.query<{ id: number }>(
          `INSERT INTO owner_rows (${names.map((n) => `"${n}"`).join(', ')})
           VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING id`,
          names.map((n) => (values as Record<string, unknown>)[n] ?? null),
        );
        const id = inserted.rows[0]?.id;
        // The owner's hash, and the fields as the capture trigger puts them in the event.
        const owner = await t.db.query<{ hash: string; fields: Record<string, unknown> }>(
          `SELECT ${ownerFieldsHashSql(columns, '"baton"')}::text AS hash,
                  (SELECT jsonb_object_agg(f, to_jsonb(t) -> f) FROM unnest($2::text[]) f) AS fields
           FROM owner_rows t WHERE id = $1`,
          [id, columns.map((c) => c.name)],
        );
        const ownerRow = owner.rows[0];
        // node-postgres parsed the jsonb with JSON.parse; the replica stores JSON.stringify of it.
        const copy = JSON.stringify(ownerRow?.fields);
        const replica = await t.db.query<{ hash: string }>(
          `SELECT baton.fields_hash($1::jsonb)::text AS hash`,
          [copy],
        );
        expect(replica.rows[0]?.hash, copy).toBe(ownerRow?.hash);
        // A copy edited by hand (one value changed) hashes differently.
        const edited = { ...ownerRow?.fields, text: `${ownerRow?.fields.text ?? ''}!` };
        const changed = await t.db.query<{ hash: string }>(
          `SELECT baton.fields_hash($1::jsonb)::text AS hash`,
          [JSON.stringify(edited)],
        );
        expect(changed.rows[0]?.hash).not.toBe(ownerRow?.hash);
      }),
      { numRuns: 300 },
    );
  });
});
