import type { Executor } from '../db/executor.ts';
import {
  type BucketDigest,
  type DigestRequest,
  type Member,
  type MembersRequest,
  type SetSide,
  SetSideProtocolError,
} from './set-side.ts';

/**
 * Where a side's members come from, as SQL fragments. They are trusted: built
 * by Baton from declared (validated, quoted) names, never from a request.
 *
 * @example
 * { fromSql: `customers t LEFT JOIN baton.stream_versions v ON v.stream_key = 'customer:' || t.id::text`,
 *   idSql: 't.id::text', versionSql: 'coalesce(v.version, 0)' }
 */
export interface MemberSource {
  /** A FROM clause (tables, joins). */
  fromSql: string;
  /** The member's id; compared as text, so an owner's `bigint` id and a replica's `text` id match. */
  idSql: string;
  /** The member's version: an integer expression, never NULL (use `coalesce`). */
  versionSql: string;
  /** Optional filter (e.g. live rows only). */
  whereSql?: string;
}

/**
 * A `SetSide` over PostgreSQL: each call is one statement, one scan of the
 * source. Hashes are PostgreSQL's own, so two databases agree:
 *
 *   bucket hash  h  = hashtextextended(id, 0)
 *   member hash  hv = hashtextextended(id || ':' || version, 1)
 *
 * and a bucket's digest is (count, bit_xor(hv)) — `bit_xor` needs
 * PostgreSQL 14 or later. Parent buckets are matched with `IN (SELECT
 * unnest(…))`, which PostgreSQL hashes, so thousands of parents cost one
 * hash probe per row, not a list walk.
 */
export function sqlSetSide(executor: Executor, source: MemberSource): SetSide {
  const id = `(${source.idSql})::text`;
  const hashed = `
    SELECT ${id} AS id, (${source.versionSql})::bigint AS version,
           hashtextextended(${id}, 0) AS h
    FROM ${source.fromSql}
    WHERE ${id} IS NOT NULL${source.whereSql ? ` AND (${source.whereSql})` : ''}`;
  const digestSql = (within: boolean) => `
    SELECT p::text AS p, count(*)::text AS n, bit_xor(hv)::text AS x
    FROM (
      SELECT h >> $1::int AS p, hashtextextended(id || ':' || version::text, 1) AS hv
      FROM (${hashed}) m
      ${within ? 'WHERE (h >> $2::int) IN (SELECT unnest($3::bigint[]))' : ''}
    ) b
    GROUP BY p`;
  const digestAll = digestSql(false);
  const digestWithin = digestSql(true);
  const membersSql = `
    SELECT id, version::text AS version
    FROM (${hashed}) m
    WHERE (h >> $1::int) IN (SELECT unnest($2::bigint[]))
      AND ($3::text IS NULL OR id > $3::text COLLATE "C")
    ORDER BY id COLLATE "C"
    LIMIT $4::int`;

  return {
    async digest(request: DigestRequest): Promise<Map<bigint, BucketDigest>> {
      const shift = 64 - request.bits;
      const result = request.within
        ? await executor.query<DigestRow>(digestWithin, [
            shift,
            64 - request.within.bits,
            request.within.prefixes.map(String),
          ])
        : await executor.query<DigestRow>(digestAll, [shift]);
      const buckets = new Map<bigint, BucketDigest>();
      for (const row of result.rows) {
        buckets.set(BigInt(row.p), { count: Number(row.n), xor: BigInt(row.x) });
      }
      return buckets;
    },

    async members(request: MembersRequest): Promise<Member[]> {
      const result = await executor.query<{ id: string; version: string | null }>(membersSql, [
        64 - request.bits,
        request.prefixes.map(String),
        request.after ?? null,
        request.limit,
      ]);
      return result.rows.map((row) => {
        const version = row.version === null ? Number.NaN : Number(row.version);
        if (!Number.isSafeInteger(version)) {
          throw new SetSideProtocolError(
            `member ${JSON.stringify(row.id)} has version ${row.version}: versions must be non-NULL integers within ±2^53`,
          );
        }
        return { id: row.id, version };
      });
    },
  };
}

interface DigestRow {
  p: string;
  n: string;
  x: string;
}
