import { InvalidInputError } from '../core/errors.ts';
import type { Database } from '../db/executor.ts';
import type { MemberSource } from '../references/members.ts';
import {
  type BucketDigest,
  type DigestRequest,
  type Member,
  type MembersRequest,
  type SetSide,
  SetSideProtocolError,
} from './set-side.ts';

/**
 * A `SetSide` over PostgreSQL: each call is one statement, one scan of the
 * source. Hashes are PostgreSQL's own, so two databases agree:
 *
 *   bucket hash  h  = hashtextextended(id, 0)
 *   member hash  hv = hashtextextended(id || ':' || version, 1)
 *               (with content: id || ':' || version || ':' || f,
 *                f = the member's content hash)
 *
 * and a bucket's digest is (count, bit_xor(hv)) — `bit_xor` needs
 * PostgreSQL 14 or later. Parent buckets are matched with `IN (SELECT
 * unnest(…))`, which PostgreSQL hashes, so thousands of parents cost one
 * hash probe per row, not a list walk; the filter only touches the source's
 * id, so PostgreSQL applies it before any join in `fromSql`. Whole-set
 * digests are kept for their sublevels (see `SqlSetSideOptions`).
 */
export function sqlSetSide(
  db: Database,
  source: MemberSource,
  options: SqlSetSideOptions = {},
): SetSide {
  const snapshotBits = options.snapshotBits ?? 16;
  if (!Number.isInteger(snapshotBits) || snapshotBits < 1 || snapshotBits > 16) {
    throw new InvalidInputError(
      `snapshotBits must be an integer from 1 to 16 (got ${snapshotBits})`,
    );
  }
  const snapshotTtlMs = options.snapshotTtlMs ?? 60_000;
  const now = options.now ?? Date.now;
  const hashedFrom = (sql: string) => `
    SELECT m.id, (m.version)::bigint AS version, hashtextextended(m.id, 0) AS h, (m.content)::bigint AS f
    FROM (${sql}) m
    WHERE m.id IS NOT NULL`;
  const hashed = hashedFrom(source.sql);
  const hashedSubset = hashedFrom(source.subsetSql ?? source.sql);
  /** One statement, after the source's setup in the same transaction when it has one. */
  const run = <R>(sql: string, params: unknown[]) =>
    source.setupSql === undefined
      ? db.query<R>(sql, params)
      : db.transaction(async (tx) => {
          await tx.query(source.setupSql as string);
          return tx.query<R>(sql, params);
        });
  const digestSql = (within: boolean) => `
    SELECT p::text AS p, count(*)::text AS n, bit_xor(hv)::text AS x
    FROM (
      SELECT h >> $1::int AS p,
             hashtextextended(id || ':' || version::text || coalesce(':' || f::text, ''), 1) AS hv
      FROM (${within ? hashedSubset : hashed}) m
      ${within ? 'WHERE (h >> $2::int) IN (SELECT unnest($3::bigint[]))' : ''}
    ) b
    GROUP BY p`;
  const digestAll = digestSql(false);
  const digestWithin = digestSql(true);
  const membersSql = `
    SELECT id, version::text AS version, f::text AS content
    FROM (${hashedSubset}) m
    WHERE (h >> $1::int) IN (SELECT unnest($2::bigint[]))
      AND ($3::text IS NULL OR id > $3::text COLLATE "C")
    ORDER BY id COLLATE "C"
    LIMIT $4::int`;
  let snapshot: { bits: number; at: number; buckets: Map<bigint, BucketDigest> } | undefined;

  async function scan(request: DigestRequest): Promise<Map<bigint, BucketDigest>> {
    const shift = 64 - request.bits;
    const result = request.within
      ? await run<DigestRow>(digestWithin, [
          shift,
          64 - request.within.bits,
          request.within.prefixes.map(String),
        ])
      : await run<DigestRow>(digestAll, [shift]);
    const buckets = new Map<bigint, BucketDigest>();
    for (const row of result.rows) {
      buckets.set(BigInt(row.p), { count: Number(row.n), xor: BigInt(row.x) });
    }
    return buckets;
  }

  return {
    async digest(request: DigestRequest): Promise<Map<bigint, BucketDigest>> {
      if (!request.within) {
        const bits = Math.max(request.bits, snapshotBits);
        snapshot = { bits, at: now(), buckets: await scan({ bits }) };
        return rollUp(snapshot.buckets, bits, request);
      }
      if (snapshot && request.bits <= snapshot.bits && now() - snapshot.at <= snapshotTtlMs) {
        return rollUp(snapshot.buckets, snapshot.bits, request);
      }
      return scan(request);
    },

    async members(request: MembersRequest): Promise<Member[]> {
      const result = await run<{
        id: string;
        version: string | null;
        content: string | null;
      }>(membersSql, [
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
        return row.content === null
          ? { id: row.id, version }
          : { id: row.id, version, content: BigInt(row.content) };
      });
    },
  };
}

export interface SqlSetSideOptions {
  /**
   * A digest of the whole set is computed at this level (default 16, at
   * most 65,536 buckets) in its one scan and kept; digests of its sublevels
   * asked within `snapshotTtlMs` (default 60 s) are answered from it
   * without scanning again. A reconciliation run then costs one scan per
   * side down to this level, and all its digests come from one snapshot.
   * A run that overlaps another may be answered from the other's (newer)
   * snapshot: still this set's digests, of a later moment.
   */
  snapshotBits?: number;
  snapshotTtlMs?: number;
  now?: () => number;
}

/** Digests at `request.bits` (inside `request.within`) from digests at a finer level. */
function rollUp(
  fine: ReadonlyMap<bigint, BucketDigest>,
  fineBits: number,
  request: DigestRequest,
): Map<bigint, BucketDigest> {
  const shift = BigInt(fineBits - request.bits);
  const parents = request.within ? new Set(request.within.prefixes) : undefined;
  const parentShift = BigInt(fineBits - (request.within?.bits ?? 0));
  const buckets = new Map<bigint, BucketDigest>();
  for (const [prefix, d] of fine) {
    if (parents && !parents.has(prefix >> parentShift)) continue;
    const child = prefix >> shift;
    const sum = buckets.get(child);
    if (sum) {
      sum.count += d.count;
      sum.xor ^= d.xor;
    } else buckets.set(child, { count: d.count, xor: d.xor });
  }
  return buckets;
}

interface DigestRow {
  p: string;
  n: string;
  x: string;
}
