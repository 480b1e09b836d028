import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bucketOf,
  type DigestRequest,
  type MembersRequest,
  type SetSide,
} from '../src/caretaker/set-side.ts';
import { sqlSetSide } from '../src/caretaker/sql-set-side.ts';
import type { Database } from '../src/db/executor.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/**
 * Below its whole-set snapshot, a SQL side answers deeper levels and
 * listings from one read of its parents' members (`readSubset`), sorted and
 * hashed in JavaScript. Whatever it answers must be what a scan of the
 * source answers: generated sets (ids of ASCII, Latin-1, other BMP and
 * astral characters — often those where UTF-16 and UTF-8 orders part —, numbers; 64-bit versions; NULL or 64-bit contents)
 * and generated request sequences (levels, parents inside and outside the
 * read, random prefixes, paging by `after` and `limit`), each asked of a
 * side that reads the subset and of one that scans at every level
 * (`maxSubsetMembers: 0`).
 */
// Where UTF-16 and UTF-8 orders part: U+E000–U+FFFF sort after astral characters in UTF-8 only.
const PARTING = ['a', 'z', 'é', '\uE000', '\uFB01', '\uFFFD', '😀', '\u{10FFFF}'];
const idArb = fc
  .oneof(
    {
      arbitrary: fc.string({ unit: fc.constantFrom(...PARTING), minLength: 1, maxLength: 3 }),
      weight: 4,
    },
    fc.stringMatching(/^[a-z0-9]{1,8}$/),
    fc.string({
      unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)),
      minLength: 1,
      maxLength: 6,
    }),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 4 }),
  )
  .filter((s) => !s.includes('\u0000'));
const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const memberArb = fc.record({
  id: idArb,
  version: fc.oneof(fc.nat({ max: 5 }), fc.maxSafeNat()),
  content: fc.option(int64, { nil: null }),
});
/** A request in the abstract: prefixes are picked from members' buckets (or made up) once hashes are known. */
const requestArb = fc.record({
  kind: fc.constantFrom('digest', 'members'),
  /** Levels below (or, for a digest's parents, at or above) the snapshot. */
  depth: fc.integer({ min: -1, max: 4 }),
  more: fc.integer({ min: 1, max: 8 }),
  /** Members whose buckets are asked for; none: the case's focus (the parents a subset was read for). */
  picks: fc.option(fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), {
    nil: undefined,
    freq: 2,
  }),
  madeUp: fc.nat({ max: 4 }).map((n) => n === 0),
  after: fc.option(
    fc.oneof(
      fc.nat().map((n) => ({ pick: n })),
      idArb.map((id) => ({ id })),
    ),
    {
      nil: undefined,
    },
  ),
  limit: fc.integer({ min: 1, max: 40 }),
});
const caseArb = fc.record({
  // Small sets often (edge cases shrink there), sets of up to 300 as often.
  members: fc.oneof(
    fc.uniqueArray(memberArb, { maxLength: 300, selector: (m) => m.id }),
    fc.uniqueArray(memberArb, { maxLength: 300, size: 'max', selector: (m) => m.id }),
  ),
  snapshotBits: fc.integer({ min: 1, max: 6 }),
  focus: fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
  requests: fc.array(requestArb, { minLength: 1, maxLength: 12 }),
});

describe('a SQL side below its snapshot answers from its read what a scan answers', () => {
  let t: TestDatabase;
  let subsetReads = 0;
  let readingStatements = 0;
  /** Listings of two members or more the reading side answered without a statement. */
  let pagesFromMemory = 0;
  /** The database, counting the subset reads (the statement that selects each member's `hv` as text). */
  let counting: Database;
  beforeAll(async () => {
    t = await freshDatabase('set_side_subset');
    await t.db.query(`CREATE TABLE gen (run int NOT NULL, id text NOT NULL, version bigint NOT NULL,
      content bigint, PRIMARY KEY (run, id))`);
    counting = Object.assign(Object.create(t.db) as Database, {
      query: ((text: string, values?: unknown[]) => {
        readingStatements++;
        if (text.includes(')::text AS hv')) subsetReads++;
        return t.db.query(text, values);
      }) as Database['query'],
    });
  });
  afterAll(async () => {
    await t?.drop();
  });

  it('for generated sets and request sequences', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ members, snapshotBits, focus, requests }) => {
        const n = ++run;
        if (members.length > 0)
          await t.db.query(
            `INSERT INTO gen SELECT $1, id, version, content
             FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS m(id, version, content)`,
            [
              n,
              members.map((m) => m.id),
              members.map((m) => String(m.version)),
              members.map((m) => (m.content === null ? null : String(m.content))),
            ],
          );
        const hashes = await bucketHashes(
          t.db,
          members.map((m) => m.id),
        );
        const source = { sql: `SELECT id, version, content FROM gen WHERE run = ${n}` };
        const reading = sqlSetSide(counting, source, { snapshotBits });
        const scanning = sqlSetSide(t.db, source, { snapshotBits, maxSubsetMembers: 0 });
        const ask = async (
          call: (side: SetSide) => Promise<unknown>,
          what: DigestRequest | MembersRequest,
        ) => {
          const statements = readingStatements;
          const [fromRead, fromScan] = [await call(reading), await call(scanning)];
          if (readingStatements === statements && Array.isArray(fromScan) && fromScan.length > 1)
            pagesFromMemory++;
          expect(
            fromRead,
            JSON.stringify(what, (_, v) => (typeof v === 'bigint' ? `${v}` : v)),
          ).toEqual(fromScan);
        };
        await ask((side) => side.digest({ bits: snapshotBits }), { bits: snapshotBits });
        const prefixesAt = (bits: number, chosen: number[] | undefined, madeUp: boolean) => {
          const picks = chosen ?? focus;
          const picked =
            hashes.length === 0 || madeUp
              ? picks.map((p) => BigInt(p % 2 ** Math.min(bits, 30)) - (1n << BigInt(bits - 1)))
              : picks.map((p) => bucketOf(hashes[p % hashes.length] as bigint, bits));
          return [...new Set(picked)];
        };
        // The descent a run makes below the snapshot: the focus buckets, one level down.
        const descent: DigestRequest = {
          bits: snapshotBits + 1,
          within: { bits: snapshotBits, prefixes: prefixesAt(snapshotBits, focus, false) },
        };
        await ask((side) => side.digest(descent), descent);
        for (const r of requests) {
          const parentBits = Math.min(Math.max(1, snapshotBits + r.depth), 56);
          if (r.kind === 'digest') {
            const request: DigestRequest = {
              bits: parentBits + r.more,
              within: { bits: parentBits, prefixes: prefixesAt(parentBits, r.picks, r.madeUp) },
            };
            await ask((side) => side.digest(request), request);
          } else {
            // Listings near the parents' level: pages of many members, where order and paging matter.
            const bits = parentBits + (r.more % 3);
            const after =
              r.after === undefined
                ? undefined
                : 'id' in r.after
                  ? r.after.id
                  : members[r.after.pick % Math.max(1, members.length)]?.id;
            const request: MembersRequest = {
              bits,
              prefixes: prefixesAt(bits, r.picks, r.madeUp),
              limit: r.limit,
              ...(after === undefined ? {} : { after }),
            };
            await ask((side) => side.members(request), request);
          }
        }
      }),
      { numRuns: 100 },
    );
    // The property compared the read with the scan, not two scans.
    expect(subsetReads).toBeGreaterThan(30);
    expect(pagesFromMemory).toBeGreaterThan(30);
  });
});

async function bucketHashes(db: Database, ids: string[]): Promise<bigint[]> {
  const r = await db.query<{ h: string }>(
    'SELECT hashtextextended(id, 0)::text AS h FROM unnest($1::text[]) AS i(id)',
    [ids],
  );
  return r.rows.map((row) => BigInt(row.h));
}
