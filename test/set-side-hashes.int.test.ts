import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcileSets } from '../src/caretaker/set-reconciliation.ts';
import { bucketOf } from '../src/caretaker/set-side.ts';
import { sqlSetSide } from '../src/caretaker/sql-set-side.ts';
import type { Database } from '../src/db/executor.ts';
import { liveContentSql } from '../src/references/members.ts';
import { freshDatabase } from './helpers.ts';

/**
 * Two findings of an outside review of the reconcile hashes and the side's
 * kept reads, each failing on the code it was found in:
 * - PostgreSQL's `hashint8extended` folds 64 bits to 32 before hashing, so
 *   values with equal folds (a fields hash changed by k·(2^32 + 1), a version
 *   5 against 2^32 + 4) hashed alike and their difference was never found;
 * - a side kept across runs (the HTTP route keeps one per entity) stored a
 *   subset read that started before a newer run's whole-set digest, and that
 *   run's deeper levels then hid a difference it had seen at the top.
 */
describe('set side: hashes over all 64 bits, and reads kept only for the run that made them', () => {
  let t: Awaited<ReturnType<typeof freshDatabase>>;
  beforeAll(async () => {
    t = await freshDatabase('set_side_hashes');
  });
  afterAll(async () => {
    await t?.drop();
  });

  it('finds a fields hash and a version that differ only where a 32-bit fold would not see it', async () => {
    await t.db.query(`
      CREATE TABLE fo (id text PRIMARY KEY, version bigint, fh bigint);
      INSERT INTO fo SELECT 'c' || g, 1 + g % 5, hashtextextended('f' || g, 2) FROM generate_series(1, 1000) g;
      CREATE TABLE fr AS SELECT * FROM fo;
      UPDATE fr SET fh = fh # ((123456789::bigint << 32) | 123456789) WHERE id = 'c7';
      UPDATE fo SET version = 5 WHERE id = 'c8';
      UPDATE fr SET version = 4294967300 WHERE id = 'c8';`);
    const source = (table: string) => ({
      sql: `SELECT id, version, ${liveContentSql('1', 'fh', "'{}'::text[]")} AS content FROM ${table}`,
    });
    const found = await reconcileSets(
      sqlSetSide(t.db, source('fo')),
      sqlSetSide(t.db, source('fr')),
    );
    expect(found.contentMismatch.map((m) => m.id)).toEqual(['c7']);
    expect(found.versionMismatch).toEqual([
      { id: 'c8', ownerVersion: 5, replicaVersion: 4294967300 },
    ]);
  });

  it('digests a member without a version below the snapshot as a scan does, without crashing', async () => {
    // A source that breaks its contract (a NULL version): a scan counts the row and XORs
    // nothing for it; the members read once below the snapshot must give the same digest.
    await t.db.query(`
      CREATE TABLE nv (id text PRIMARY KEY, version bigint);
      INSERT INTO nv SELECT 'n' || g, CASE WHEN g = 7 THEN NULL ELSE 1 END FROM generate_series(1, 500) g;`);
    const source = { sql: 'SELECT id, version, NULL::bigint AS content FROM nv' };
    const h = await t.db.query<{ h: string }>("SELECT hashtextextended('n7', 0)::text AS h");
    const parent = bucketOf(BigInt(h.rows[0]?.h ?? '0'), 4);
    const request = { bits: 8, within: { bits: 4, prefixes: [parent] } };
    const sides = [
      sqlSetSide(t.db, source, { snapshotBits: 4 }),
      sqlSetSide(t.db, source, { snapshotBits: 4, maxSubsetMembers: 0 }),
    ];
    const digests = [];
    for (const side of sides) {
      await side.digest({ bits: 4 });
      digests.push(await side.digest(request));
    }
    expect(digests[0]).toEqual(digests[1]);
  });

  it('a run overlapping another on one kept side finds what it saw at the top', async () => {
    await t.db.query(`
      CREATE TABLE own (id text PRIMARY KEY, version bigint);
      INSERT INTO own SELECT 'k' || g, 1 FROM generate_series(1, 20000) g;
      CREATE TABLE rep AS SELECT * FROM own;`);
    // Holds the answer of the subset read (its statement has run) and of the whole-set digest.
    let holdSubset: Promise<void> | undefined;
    let holdWhole: Promise<void> | undefined;
    const delaying: Database = Object.assign(Object.create(t.db) as Database, {
      query: (async (text: string, values?: unknown[]) => {
        const r = await t.db.query(text, values);
        if (holdSubset && text.includes('AS hv')) await holdSubset;
        return r;
      }) as Database['query'],
      transaction: (async (fn: Parameters<Database['transaction']>[0]) => {
        const r = await t.db.transaction(fn);
        if (holdWhole) await holdWhole;
        return r;
      }) as Database['transaction'],
    });
    const source = (table: string) => ({
      sql: `SELECT id, version, NULL::bigint AS content FROM ${table}`,
    });
    const kept = sqlSetSide(delaying, source('own'), { snapshotBits: 8 });
    await kept.digest({ bits: 8 }); // run A's top level
    const lost = 'k-new';
    const h = await t.db.query<{ h: string }>('SELECT hashtextextended($1, 0)::text AS h', [lost]);
    const parent = bucketOf(BigInt(h.rows[0]?.h ?? '0'), 8);
    let releaseSubset = () => {};
    holdSubset = new Promise((r) => {
      releaseSubset = r;
    });
    // Run A reads the members of the parent below the snapshot; its answer is held.
    const runA = kept.digest({ bits: 10, within: { bits: 8, prefixes: [parent] } });
    await new Promise((r) => setTimeout(r, 200));
    await t.db.query('INSERT INTO own VALUES ($1, 1)', [lost]); // a row the replica never gets
    let releaseWhole = () => {};
    holdWhole = new Promise((r) => {
      releaseWhole = r;
    });
    const runB = reconcileSets(kept, sqlSetSide(t.db, source('rep'), { snapshotBits: 8 }), {
      topBits: 8,
      leafSize: 4,
    });
    await new Promise((r) => setTimeout(r, 300));
    holdSubset = undefined;
    releaseSubset(); // A's older read lands after B's whole-set digest started…
    await runA;
    holdWhole = undefined;
    releaseWhole(); // …and before B's answer is taken in.
    const b = await runB;
    expect(b.onlyInOwner).toEqual([{ id: lost, version: 1 }]);
  });
});
