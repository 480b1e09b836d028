import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpSetSide, setSideRoute } from '../src/caretaker/http-set-side.ts';
import { reconcileSets, type SetDifference } from '../src/caretaker/set-reconciliation.ts';
import { type Member, SET_SIDE_HASH_SCHEME, type SetSide } from '../src/caretaker/set-side.ts';
import { encodeMembersResponse, jsonBytes } from '../src/caretaker/set-side-wire.ts';
import { sqlSetSide } from '../src/caretaker/sql-set-side.ts';
import { authHeaders } from '../src/http/auth.ts';
import { errorResponse } from '../src/http/http-types.ts';
import { type RunningServer, serveHttp } from '../src/http/node-server.ts';
import { createServiceHandler } from '../src/http/service-handler.ts';
import { signedClient } from '../src/http/signed-client.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase, SECRET } from './helpers.ts';

/**
 * Set reconciliation between two real databases: an owner's 20,000
 * customers (bigint ids, versions in baton.stream_versions) and a referrer's
 * replica of them (text ids, its own versions), with differences of every
 * kind injected by plain SQL. Found exactly, in process and over signed HTTP.
 */
const ROWS = 20_000;

const OWNER_SOURCE = {
  sql: `SELECT t.id::text AS id, coalesce(v.version, 0) AS version, NULL AS content
        FROM customers t LEFT JOIN baton.stream_versions v ON v.stream_key = 'baton.entity:customer:' || t.id::text`,
};
const REPLICA_SOURCE = {
  sql: `SELECT r.id::text AS id, r.version, NULL AS content FROM replica_customer r WHERE r.state <> 'purged'`,
};

describe('set reconciliation between two PostgreSQL databases', () => {
  let ownerDb: TestDatabase;
  let replicaDb: TestDatabase;
  let server: RunningServer;
  let ownerSide: SetSide;
  let replicaSide: SetSide;
  let expected: SetDifference;
  let ownerMembers: Member[];

  beforeAll(async () => {
    [ownerDb, replicaDb] = await Promise.all([
      freshDatabase('reconcile_owner'),
      freshDatabase('reconcile_replica'),
    ]);
    await ownerDb.db.query(`
      CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);
      INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, ${ROWS}) g;
      INSERT INTO baton.stream_versions SELECT 'baton.entity:customer:' || g, 1 + g % 3 FROM generate_series(1, ${ROWS}) g;
      ANALYZE customers; ANALYZE baton.stream_versions;`);
    await replicaDb.db.query(`
      CREATE TABLE replica_customer (id text PRIMARY KEY, state text NOT NULL, version bigint NOT NULL);
      INSERT INTO replica_customer SELECT g::text, 'active', 1 + g % 3 FROM generate_series(1, ${ROWS}) g;
      ANALYZE replica_customer;`);
    await injectDifferences(ownerDb, replicaDb);
    ownerSide = sqlSetSide(ownerDb.db, OWNER_SOURCE);
    replicaSide = sqlSetSide(replicaDb.db, REPLICA_SOURCE);
    ownerMembers = await allMembers(ownerDb, OWNER_SOURCE);
    expected = groundTruth(ownerMembers, await allMembers(replicaDb, REPLICA_SOURCE));
    const handler = createServiceHandler({
      auth: { type: 'hmac', secrets: [SECRET] },
      routes: [setSideRoute((name) => (name === 'customer' ? ownerSide : undefined))],
    });
    server = await serveHttp((request, signal) => handler.handle(request, signal));
  });

  afterAll(async () => {
    await server?.close();
    await ownerDb?.drop();
    await replicaDb?.drop();
  });

  it('injected differences of every kind are in the ground truth', () => {
    const ids = (list: { id: string }[]) => list.map((m) => m.id).sort();
    expect(ids(expected.onlyInOwner)).toEqual(['2002', '20101', '3003', '4004', '5005', '6006']);
    expect(ids(expected.onlyInReplica)).toEqual(['17017', '18018', '900001', '900002', '900003']);
    expect(ids(expected.versionMismatch)).toEqual(['10010', '7007', '8008', '9009']);
  });

  it('finds exactly the difference between the two databases', async () => {
    const { stats, ...difference } = await reconcileSets(ownerSide, replicaSide);
    expect(difference).toEqual(expected);
    expect(stats.levels).toBeGreaterThan(1);
  });

  it('finds the same difference through the owner’s signed HTTP endpoint, with a fraction of the bytes', async () => {
    const remote = httpSetSide({
      client: signedClient({
        name: 'customers',
        url: `${server.url}/baton`,
        auth: { type: 'hmac', secret: SECRET },
      }),
      path: 'sets/customer',
    });
    const { stats, ...difference } = await reconcileSets(remote, replicaSide);
    expect(difference).toEqual(expected);
    const exchanged = remote.traffic.requestBytes + remote.traffic.responseBytes;
    expect(stats.owner.requestBytes + stats.owner.responseBytes).toBe(exchanged);
    expect(exchanged).toBeLessThan(jsonBytes(encodeMembersResponse(ownerMembers)) / 5);
  });

  it('finds the same difference below the snapshot (read once, or scanned at every level) and when the snapshot has expired', async () => {
    let clock = 0;
    const ticking = () => (clock += 1000);
    for (const options of [
      { snapshotBits: 8 },
      { snapshotBits: 8, maxSubsetMembers: 0 },
      { snapshotTtlMs: 500, now: ticking },
    ]) {
      const { stats, ...difference } = await reconcileSets(
        sqlSetSide(ownerDb.db, OWNER_SOURCE, options),
        sqlSetSide(replicaDb.db, REPLICA_SOURCE, options),
      );
      expect(difference).toEqual(expected);
      expect(stats.levels).toBeGreaterThan(1);
    }
  });

  it('finds nothing between identical sets, after one digest per side', async () => {
    const { stats, ...difference } = await reconcileSets(ownerSide, ownerSide);
    expect(difference).toEqual({
      onlyInOwner: [],
      onlyInReplica: [],
      versionMismatch: [],
      contentMismatch: [],
    });
    expect(stats.owner.calls).toBe(1);
  });

  it('finds an empty replica wholly different, by listing (the streaming fallback)', async () => {
    const empty = sqlSetSide(replicaDb.db, { sql: `${REPLICA_SOURCE.sql} AND false` });
    const { stats, ...difference } = await reconcileSets(ownerSide, empty, { pageSize: 5000 });
    expect(difference.onlyInOwner).toHaveLength(ownerMembers.length);
    expect(difference.onlyInReplica).toEqual([]);
    expect(stats.levels).toBe(1);
  });

  describe('the HTTP endpoint refuses bad requests', () => {
    // The bodies name the hash scheme as a current client does, unless `raw`.
    const post = async (given: string, path = '/baton/sets/customer', sign = true, raw = false) => {
      const body =
        given.startsWith('{') && !raw
          ? `{"scheme":${SET_SIDE_HASH_SCHEME},${given.slice(1)}`
          : given;
      const headers = sign
        ? authHeaders({ type: 'hmac', secret: SECRET }, { method: 'POST', target: path, body })
        : {};
      const response = await fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
      return { status: response.status, text: await response.text() };
    };
    const manyPrefixes = Array.from({ length: 65_537 }, (_, i) => String(i - 32_768));

    it.each([
      ['not JSON', '{"op":', 'must be JSON'],
      ['not an object', '[1,2]', 'JSON object'],
      ['no op', '{"bits":8}', '"op" must be'],
      ['unknown op', '{"op":"drop","bits":8}', '"op" must be'],
      ['unknown field', '{"op":"digest","bits":8,"sql":"x"}', 'unknown field "sql"'],
      ['bits 0', '{"op":"digest","bits":0}', '"bits" must be an integer from 1 to 64'],
      ['bits 65', '{"op":"members","bits":65,"prefixes":["0"],"limit":1}', 'from 1 to 64'],
      ['bits as string', '{"op":"digest","bits":"8"}', '"bits" must be an integer'],
      ['bits fractional', '{"op":"digest","bits":8.5}', '"bits" must be an integer'],
      ['whole set too deep', '{"op":"digest","bits":20}', 'at most to 16 bits'],
      [
        'prefix as number',
        '{"op":"digest","bits":12,"within":{"bits":8,"prefixes":[3]}}',
        'not a 8-bit prefix',
      ],
      [
        'prefix out of range',
        '{"op":"digest","bits":12,"within":{"bits":8,"prefixes":["128"]}}',
        'not a 8-bit prefix',
      ],
      [
        'prefix beyond 64 bits',
        '{"op":"members","bits":64,"prefixes":["9223372036854775808"],"limit":1}',
        'not a 64-bit prefix',
      ],
      [
        'descent too deep',
        '{"op":"digest","bits":20,"within":{"bits":8,"prefixes":["1"]}}',
        'must be 1 to 8 more',
      ],
      [
        'parent not above',
        '{"op":"digest","bits":8,"within":{"bits":8,"prefixes":["1"]}}',
        'must be 1 to 8 more',
      ],
      ['no prefixes', '{"op":"members","bits":8,"prefixes":[],"limit":1}', 'non-empty array'],
      [
        'too many prefixes',
        JSON.stringify({ op: 'members', bits: 20, prefixes: manyPrefixes, limit: 1 }),
        'at most 65536 per call',
      ],
      ['limit 0', '{"op":"members","bits":8,"prefixes":["1"],"limit":0}', '"limit" must be'],
      ['limit huge', '{"op":"members","bits":8,"prefixes":["1"],"limit":1e9}', '"limit" must be'],
      [
        'after not a string',
        '{"op":"members","bits":8,"prefixes":["1"],"limit":5,"after":7}',
        '"after" must be an id',
      ],
      [
        'after with NUL',
        '{"op":"members","bits":8,"prefixes":["1"],"limit":5,"after":"a\\u0000"}',
        'NUL',
      ],
    ])('%s → 400', async (_name, body, reason) => {
      const answer = await post(body);
      expect(answer.status, answer.text).toBe(400);
      expect(JSON.parse(answer.text).error.message).toContain(reason);
    });

    it.each([
      [
        'no scheme (a release before hash schemes)',
        '{"bits":8,"op":"digest"}',
        'names no hash scheme',
      ],
      ['another scheme', '{"scheme":1,"op":"digest","bits":8}', 'hash scheme 1'],
      [
        'a scheme as text',
        `{"scheme":"${SET_SIDE_HASH_SCHEME}","op":"digest","bits":8}`,
        'hash scheme "',
      ],
    ])('%s → 409, saying both sides must run the same release', async (_name, body, reason) => {
      const answer = await post(body, undefined, true, true);
      expect(answer.status, answer.text).toBe(409);
      const error = JSON.parse(answer.text).error;
      expect(error.code).toBe('BATON_HASH_SCHEME');
      expect(error.message).toContain(reason);
      expect(error.message).toContain(`this side hashes with scheme ${SET_SIDE_HASH_SCHEME}`);
    });

    it('a client told by an owner of another release says so, instead of a run that differs everywhere', async () => {
      // What the owner of the release before hash schemes answered a body with a field it did not know.
      const before = createServiceHandler({
        auth: { type: 'hmac', secrets: [SECRET] },
        routes: [
          {
            method: 'POST',
            pattern: /^\/sets\/customer$/,
            describe: '/sets/<entity>',
            handle: async () =>
              errorResponse(
                400,
                'BATON_BAD_REQUEST',
                'unknown field "scheme" in the body; allowed: op, bits, within',
              ),
          },
        ],
      });
      const older = await serveHttp((request, signal) => before.handle(request, signal));
      try {
        const sideAt = (url: string) =>
          httpSetSide({
            client: signedClient({
              name: 'customers',
              url,
              auth: { type: 'hmac', secret: SECRET },
            }),
            path: 'sets/customer',
          });
        await expect(reconcileSets(sideAt(`${older.url}/baton`), replicaSide)).rejects.toThrow(
          /customers runs a Baton release without hash schemes.*same Baton release/,
        );
        // And the current owner, asked by a client of another scheme, refuses it by name.
        const response = await post(
          `{"scheme":${SET_SIDE_HASH_SCHEME + 1},"op":"digest","bits":8}`,
          undefined,
          true,
          true,
        );
        expect(response.status).toBe(409);
      } finally {
        await older.close();
      }
    });

    it('an unsigned request → 401, an unknown set → 404', async () => {
      expect((await post('{"op":"digest","bits":8}', undefined, false)).status).toBe(401);
      expect((await post('{"op":"digest","bits":8}', '/baton/sets/invoice')).status).toBe(404);
    });

    it('a valid request after the bad ones → 200 (nothing was changed)', async () => {
      const answer = await post('{"op":"digest","bits":8}');
      expect(answer.status).toBe(200);
      const children = JSON.parse(answer.text).children as (0 | [number, string])[];
      expect(children).toHaveLength(256);
      const total = children.reduce<number>((sum, c) => sum + (c === 0 ? 0 : c[0]), 0);
      expect(total).toBe(ownerMembers.length);
    });
  });
});

/**
 * Every kind of difference, made with plain SQL behind Baton's back: lost
 * upserts (owner rows the replica lacks, one of them new), lost deletes and
 * true orphans (replica rows the owner does not have; a `purged` one is
 * filtered out by `whereSql`), stale and ahead versions, and an owner row
 * whose version counter is gone (version 0).
 */
async function injectDifferences(owner: TestDatabase, replica: TestDatabase): Promise<void> {
  await owner.db.query(`
    INSERT INTO customers VALUES (20101, 'new customer');
    INSERT INTO baton.stream_versions VALUES ('baton.entity:customer:20101', 1);
    DELETE FROM customers WHERE id IN (17017, 18018);
    UPDATE baton.stream_versions SET version = 5 WHERE stream_key = 'baton.entity:customer:7007';
    DELETE FROM baton.stream_versions WHERE stream_key = 'baton.entity:customer:8008';
    UPDATE baton.stream_versions SET version = 10 WHERE stream_key = 'baton.entity:customer:10010';`);
  await replica.db.query(`
    DELETE FROM replica_customer WHERE id IN ('2002', '3003', '4004', '5005', '6006');
    INSERT INTO replica_customer VALUES ('900001', 'active', 1), ('900002', 'active', 4),
      ('900003', 'deleting', 2), ('900004', 'purged', 1);
    UPDATE replica_customer SET version = 9 WHERE id = '9009';`);
}

async function allMembers(database: TestDatabase, source: { sql: string }): Promise<Member[]> {
  const result = await database.db.query<{ id: string; version: string }>(
    `SELECT id, version::text AS version FROM (${source.sql}) m`,
  );
  return result.rows.map((r) => ({ id: r.id, version: Number(r.version) }));
}

function groundTruth(owner: readonly Member[], replica: readonly Member[]): SetDifference {
  const o = new Map(owner.map((m) => [m.id, m.version]));
  const r = new Map(replica.map((m) => [m.id, m.version]));
  const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  return {
    onlyInOwner: owner.filter((m) => !r.has(m.id)).sort(byId),
    onlyInReplica: replica.filter((m) => !o.has(m.id)).sort(byId),
    versionMismatch: owner
      .filter((m) => r.has(m.id) && r.get(m.id) !== m.version)
      .map((m) => ({ id: m.id, ownerVersion: m.version, replicaVersion: r.get(m.id) as number }))
      .sort(byId),
    contentMismatch: [],
  };
}
