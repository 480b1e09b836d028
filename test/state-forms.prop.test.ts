import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Caretaker } from '../src/index.ts';
import { eventually } from './helpers.ts';
import { caughtUp, startService, type TestService } from './support/services.ts';

/*
 * Every value PostgreSQL can store in a captured column replicates
 * faithfully, whatever session wrote it:
 *
 * - a generator of owner rows over many column types and their edge values
 *   (integers past 2^53, numeric beyond a double, NaN, infinities, jsonb with
 *   `__proto__` keys or nesting 70 deep, 1e400, char padding, arrays,
 *   ranges, composites, domains, …): no state event becomes a dead letter,
 *   each replica value turns back into exactly the owner's value
 *   (`jsonb_populate_record` of the replica's copy, read in the owner's
 *   database), and the caretaker finds no difference;
 * - a matrix of writer session settings (DateStyle, IntervalStyle, TimeZone,
 *   extra_float_digits, bytea_output, search_path, lc_monetary): the same
 *   values written under any of them give byte-identical state events.
 */

let customers: TestService;
let orders: TestService;
let caretaker: Caretaker;
let run = 0;

const COLUMNS: [string, string][] = [
  ['txt', 'text'],
  ['vc', 'varchar(12)'],
  ['ch', 'char(5)'],
  ['nm', 'name'],
  ['uid', 'uuid'],
  ['md', 'mood'],
  ['bo', 'boolean'],
  ['i2', 'smallint'],
  ['i4', 'integer'],
  ['i8', 'bigint'],
  ['nu', 'numeric'],
  ['n2', 'numeric(12,2)'],
  ['f4', 'real'],
  ['f8', 'double precision'],
  ['mo', 'money'],
  ['dt', 'date'],
  ['tm', 'time'],
  ['tz', 'timetz'],
  ['ts', 'timestamp'],
  ['tt', 'timestamptz'],
  ['iv', 'interval'],
  ['by', 'bytea'],
  ['js', 'json'],
  ['jb', 'jsonb'],
  ['ia', 'integer[]'],
  ['ta', 'text[]'],
  ['fa', 'double precision[]'],
  ['ba', 'boolean[]'],
  ['ra', 'int4range'],
  ['pt', 'point'],
  ['ip', 'inet'],
  ['bi', 'bit(4)'],
  ['tv', 'tsvector'],
  ['cp', 'pair'],
  ['dm', 'bigid'],
  ['ma', 'mood[]'],
];
/** Types without an equality operator: compared by their text form. */
const BY_TEXT = new Set(['js', 'pt']);

beforeAll(async () => {
  customers = await startService('customers');
  orders = await startService('orders');
  await customers.database.db.query(`
    CREATE TYPE mood AS ENUM ('calm', 'über', 'it''s');
    CREATE TYPE pair AS (a int, b text);
    CREATE DOMAIN bigid AS bigint;
    CREATE TABLE rows (id text PRIMARY KEY, ${COLUMNS.map(([n, t]) => `${n} ${t}`).join(', ')})`);
  customers.baton.entity({
    name: 'row',
    table: 'rows',
    key: 'id',
    fields: COLUMNS.map(([n]) => n),
  });
  await customers.baton.install();
  await orders.database.db.query('CREATE TABLE notes (id serial PRIMARY KEY, row_id text)');
  orders.baton.replicate({
    entity: 'row',
    owner: orders.ownerClientOf(customers),
    consumer: orders.consumerOf(customers),
  });
  orders.baton.reference({ table: 'notes', column: 'row_id', entity: 'row', onDelete: 'cascade' });
  await orders.baton.install();
  await orders.startConsumers();
  caretaker = orders.baton.caretaker();
});
afterAll(async () => {
  await orders?.stop();
  await customers?.stop();
});

// ── values, as PostgreSQL input text, in forms no session setting reads otherwise ──
const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { freq: 6 });
const text = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.constantFrom('', "it's", '\\', ' lead', 'trail ', 'ß\u{1F600}'),
);
const ints = (bits: number) =>
  fc.oneof(
    fc.bigInt({ min: -(2n ** BigInt(bits - 1)), max: 2n ** BigInt(bits - 1) - 1n }),
    fc.constantFrom(-(2n ** BigInt(bits - 1)), 2n ** BigInt(bits - 1) - 1n, 0n),
  );
const numeric = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(String),
  fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map(String),
  fc.constantFrom('1.50', '0.1', '1e400', '-1e-400', '9007199254740993', 'NaN', 'Infinity', '-0'),
);
const floats = fc.oneof(
  fc.double().map((d) => (Object.is(d, -0) ? '-0' : String(d))),
  fc.constantFrom(
    'NaN',
    'Infinity',
    '-Infinity',
    '0.30000000000000004',
    '5e-324',
    '1.7976931348623157e308',
  ),
);
const deep = (n: number) => `${'['.repeat(n)}1${']'.repeat(n)}`;
const json = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.constantFrom(
    '{"__proto__": {"admin": true}}',
    '{"constructor": {"prototype": 1}}',
    '{"n": 1e400, "m": -1e-400, "b": 9007199254740993}',
    deep(70),
    '{"a": 1, "a": 2}',
    '"\\u0001"',
  ),
);
const row = fc.record({
  txt: opt(text),
  vc: opt(text.map((s) => [...s].slice(0, 12).join(''))),
  ch: opt(fc.constantFrom('a', 'ab   ', ' x', '')),
  nm: opt(fc.constantFrom('a', 'über', 'x y')),
  uid: opt(fc.uuid()),
  md: opt(fc.constantFrom('calm', 'über', "it's")),
  bo: opt(fc.boolean()),
  i2: opt(ints(16).map(String)),
  i4: opt(ints(32).map(String)),
  i8: opt(ints(64).map(String)),
  nu: opt(numeric),
  n2: opt(fc.double({ min: -1e9, max: 1e9, noNaN: true }).map((x) => x.toFixed(2))),
  f4: opt(fc.oneof(fc.float({ noNaN: true }).map(String), fc.constantFrom('NaN', '3.4028235e38'))),
  f8: opt(floats),
  mo: opt(fc.constantFrom('12.34', '-0.01', '92233720368547758.07', '0')),
  dt: opt(fc.constantFrom('2026-12-03', '0001-01-01', '4713-01-01 BC', 'infinity', '294276-12-31')),
  tm: opt(fc.constantFrom('00:00', '23:59:59.999999', '24:00')),
  tz: opt(fc.constantFrom('10:00+02', '00:00-15:59', '23:59:59.5+14')),
  ts: opt(fc.constantFrom('2026-12-03 10:00:00', '1999-12-31 23:59:59.123456', '-infinity')),
  tt: opt(fc.constantFrom('2026-12-03 10:00:00+05:30', '1900-01-01 00:00:00+00', 'infinity')),
  iv: opt(
    fc.constantFrom(
      '1 day 02:00:00',
      '-1 year -2 mons +3 days -04:05:06',
      '00:00:00.000001',
      '178000000 years',
    ),
  ),
  by: opt(fc.uint8Array({ maxLength: 8 }).map((b) => `\\x${Buffer.from(b).toString('hex')}`)),
  js: opt(json),
  jb: opt(json),
  ia: opt(fc.constantFrom('{}', '{1,NULL,-2147483648}', '{{1,2},{3,4}}')),
  ta: opt(
    fc
      .array(text, { maxLength: 3 })
      .map(
        (a) =>
          `{${a.map((s) => `"${s.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`).join(',')}}`,
      ),
  ),
  fa: opt(fc.constantFrom('{1.5,NaN,Infinity}', '{0.1,-0}', '{}')),
  ba: opt(fc.constantFrom('{t,f,NULL}', '{}')),
  ra: opt(fc.constantFrom('[1,5)', 'empty', '(,3]', '[-2147483648,2147483647)')),
  pt: opt(fc.constantFrom('(1,2)', '(1e300,-1.5)', '(NaN,0)')),
  ip: opt(fc.constantFrom('10.0.0.1', '10.0.0.0/8', '::1', '2001:db8::1/64')),
  bi: opt(fc.constantFrom('1010', '0000')),
  tv: opt(fc.constantFrom('a fat cat', "'it''s' x:1A")),
  cp: opt(fc.constantFrom('(1,"x y")', '(,)', '(-1,"\\"")')),
  dm: opt(ints(64).map(String)),
  ma: opt(fc.constantFrom('{calm,über}', '{}', `{"it's",NULL}`)),
});
type Row = typeof row extends fc.Arbitrary<infer T> ? T : never;

/** Writer session settings, each value given to SET LOCAL as is. */
const settings = fc.record({
  datestyle: fc.constantFrom("'SQL, DMY'", "'German'", "'Postgres, MDY'", "'ISO, YMD'"),
  intervalstyle: fc.constantFrom('sql_standard', 'iso_8601', 'postgres_verbose', 'postgres'),
  timezone: fc.constantFrom("'Asia/Kolkata'", "'America/St_Johns'", "'UTC'", "'Pacific/Chatham'"),
  extra_float_digits: fc.constantFrom('-15', '0', '1', '3'),
  bytea_output: fc.constantFrom('escape', 'hex'),
  search_path: fc.constantFrom('public', 'pg_temp, public, pg_catalog'),
  lc_monetary: fc.constantFrom("'C'"),
});

async function insert(
  id: string,
  values: Row,
  session: Record<string, string> = {},
): Promise<void> {
  const names = COLUMNS.map(([n]) => n);
  await customers.database.db.transaction(async (tx) => {
    for (const [name, value] of Object.entries(session))
      await tx.query(`SET LOCAL ${name} = ${value}`);
    await tx.query(
      `INSERT INTO public.rows (id, ${names.join(', ')}) VALUES ($1, ${names.map((_, i) => `$${i + 2}`).join(', ')})`,
      [id, ...names.map((n) => (values as Record<string, unknown>)[n] ?? null)],
    );
  });
}

/** The fields of the id's latest state event, as the owner wrote it into its outbox. */
async function eventFields(id: string): Promise<string> {
  const r = await customers.database.db.query<{ fields: string }>(
    `SELECT (payload->'fields')::text AS fields FROM baton.outbox
     WHERE key = 'row:' || $1 ORDER BY version DESC LIMIT 1`,
    [id],
  );
  return r.rows[0]?.fields ?? '';
}

/** Columns whose replica value does not turn back into the owner's value. */
async function unfaithful(id: string): Promise<unknown[]> {
  const copy = await orders.database.db.query<{ fields: Record<string, unknown> }>(
    'SELECT fields FROM baton.replica_row WHERE id = $1',
    [id],
  );
  const fields = copy.rows[0]?.fields;
  if (!fields) return [{ id, problem: 'no replica row' }];
  // json and jsonb travel as the JSON text (a string): read back with their own input.
  const checks = COLUMNS.map(([n]) =>
    n === 'js'
      ? `(t.js)::text IS NOT DISTINCT FROM ($2::jsonb->>'js') AS js`
      : n === 'jb'
        ? `t.jb IS NOT DISTINCT FROM ($2::jsonb->>'jb')::jsonb AS jb`
        : BY_TEXT.has(n)
          ? `(t.${n})::text IS NOT DISTINCT FROM (c.${n})::text AS ${n}`
          : `t.${n} IS NOT DISTINCT FROM c.${n} AS ${n}`,
  );
  const r = await customers.database.db.query<Record<string, boolean>>(
    `SELECT ${checks.join(', ')} FROM public.rows t, jsonb_populate_record(NULL::public.rows, $2::jsonb) c WHERE t.id = $1`,
    [id, JSON.stringify(fields)],
  );
  const same = r.rows[0] ?? {};
  return COLUMNS.filter(([n]) => same[n] !== true).map(([n]) => ({
    column: n,
    replica: fields[n],
  }));
}

describe('state forms', () => {
  it('every value of every type replicates faithfully: no dead letter, no difference', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(row, { minLength: 1, maxLength: 4 }), async (rows) => {
        run++;
        const ids = rows.map((_, i) => `v${run}-${i}`);
        for (const [i, values] of rows.entries()) await insert(ids[i] as string, values);
        await eventually(() => caughtUp(customers, orders), 'the referrer caught up');
        const dead = await orders.database.db.query(
          "SELECT last_error FROM baton.inbox WHERE status = 'dead'",
        );
        expect(
          dead.rows.map((r) => r.last_error),
          'state events turned dead letters',
        ).toEqual([]);
        for (const id of ids) expect(await unfaithful(id), id).toEqual([]);
        const report = await caretaker.run({ examples: 50 });
        expect(report.entities[0]?.error).toBeUndefined();
        expect(report.entities[0]?.examples).toEqual([]);
      }),
      { numRuns: 40 },
    );
  }, 240_000);

  it('a writer’s session settings change nothing the state events carry', async () => {
    await fc.assert(
      fc.asyncProperty(row, settings, async (values, session) => {
        run++;
        await insert(`s${run}-plain`, values);
        await insert(`s${run}-session`, values, session);
        expect(await eventFields(`s${run}-session`), JSON.stringify(session)).toBe(
          await eventFields(`s${run}-plain`),
        );
      }),
      { numRuns: 60 },
    );
    await eventually(() => caughtUp(customers, orders), 'the referrer caught up');
    const report = await caretaker.run({ examples: 50 });
    expect(report.entities[0]?.examples.map((f) => `${f.id}: ${f.class}`)).toEqual([]);
  }, 240_000);
});
