import { InvalidInputError } from '../core/errors.ts';
import type { Database } from '../db/executor.ts';
import { int8HashSql, type MemberSource } from '../references/members.ts';
import {
  type BucketDigest,
  bucketOf,
  compareIds,
  type DigestRequest,
  type Member,
  type MembersRequest,
  type SetSide,
  SetSideProtocolError,
} from './set-side.ts';

/**
 * A `SetSide` over PostgreSQL: each call is one statement, one scan of the
 * source, or answered from what an earlier call read (see `snapshotBits`
 * and `readSubset`). Hashes are PostgreSQL's own, so two databases agree:
 *
 *   bucket hash  h  = hashtextextended(id, 0)
 *   member hash  hv = H(version, h)
 *               (with content: H(f, H(version, h)), f = the member's content hash)
 *   where H(x, seed) hashes both 32-bit halves of x (`int8HashSql`)
 *
 * The member hash chains integer hashes seeded by the bucket hash instead of
 * hashing the text `id:version:f` (which cost ~0.4 µs a row: 4 of the 12 s a
 * 10,000,000-row digest took); it is as much a function of (id, version, f).
 * and a bucket's digest is (count, bit_xor(hv)) — `bit_xor` needs
 * PostgreSQL 14 or later. Parent buckets are matched with `= ANY($n)`,
 * which PostgreSQL hashes (a parameter of a custom plan is a constant), so
 * thousands of parents cost one hash probe per row; and being a filter on
 * the source's id alone, it is applied in the scan, before the lookups of
 * `subsetSql` — an `IN (SELECT unnest(…))` became a semi-join above them,
 * and a scan of 300 buckets of 10,000,000 rows looked up every row's
 * version (18 s instead of 3.4 s). Whole-set digests are kept for their
 * sublevels (see `SqlSetSideOptions`).
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
  const maxSubsetMembers = options.maxSubsetMembers ?? 100_000;
  const now = options.now ?? Date.now;
  const hashedFrom = (sql: string) => `
    SELECT m.id, (m.version)::bigint AS version, hashtextextended(m.id, 0) AS h, (m.content)::bigint AS f
    FROM (${sql}) m
    WHERE m.id IS NOT NULL`;
  const hashed = hashedFrom(source.sql);
  const hashedSubset = hashedFrom(source.subsetSql ?? source.sql);
  /** One statement, after the source's setup (and `setup`) in the same transaction when there is one. */
  const run = <R>(sql: string, params: unknown[], setup?: string) => {
    const setups = [source.setupSql, setup].filter((x) => x !== undefined);
    return setups.length === 0
      ? db.query<R>(sql, params)
      : db.transaction(async (tx) => {
          for (const statement of setups) await tx.query(statement);
          return tx.query<R>(sql, params);
        });
  };
  const versionHash = int8HashSql('version', 'h');
  const memberHash = `CASE WHEN f IS NULL THEN ${versionHash} ELSE ${int8HashSql('f', versionHash)} END`;
  const digestSql = (within: boolean) => `
    SELECT p::text AS p, count(*)::text AS n, bit_xor(hv)::text AS x
    FROM (
      SELECT h >> $1::int AS p, ${memberHash} AS hv
      FROM (${within ? hashedSubset : hashed}) m
      ${within ? 'WHERE (h >> $2::int) = ANY ($3::bigint[])' : ''}
    ) b
    GROUP BY p`;
  const digestAll = digestSql(false);
  const digestWithin = digestSql(true);
  const membersSql = `
    SELECT id, version::text AS version, f::text AS content
    FROM (${hashedSubset}) m
    WHERE (h >> $1::int) = ANY ($2::bigint[])
      AND ($3::text IS NULL OR id > $3::text COLLATE "C")
    ORDER BY id COLLATE "C"
    LIMIT $4::int`;
  const subsetSql = `
    SELECT id, version::text AS version, f::text AS content, h::text AS h, (${memberHash})::text AS hv
    FROM (${hashedSubset}) m
    WHERE (h >> $1::int) = ANY ($2::bigint[])`;
  let snapshot: { bits: number; at: number; buckets: Map<bigint, BucketDigest> } | undefined;
  let subset: Subset | undefined;
  /**
   * Bumped when a whole-set digest starts. The side is kept across runs (one
   * per entity behind the HTTP route), so runs overlap: what a read started
   * before the newest whole-set digest brings back is used for its own call
   * only, never kept for a later run's deeper levels.
   */
  let generation = 0;
  const fresh = (at: number) => now() - at <= snapshotTtlMs;

  async function scan(request: DigestRequest): Promise<Map<bigint, BucketDigest>> {
    const shift = 64 - request.bits;
    const result = request.within
      ? await run<DigestRow>(digestWithin, [
          shift,
          64 - request.within.bits,
          request.within.prefixes.map(String),
        ])
      : await run<DigestRow>(digestAll, [shift], WHOLE_SET_SETUP);
    const buckets = new Map<bigint, BucketDigest>();
    for (const row of result.rows) {
      buckets.set(BigInt(row.p), { count: Number(row.n), xor: BigInt(row.x) });
    }
    return buckets;
  }

  /**
   * Below the whole-set snapshot, the first level asked for reads every
   * member of its parent buckets once (with its bucket and member hashes),
   * when the snapshot bounds them to at most `maxSubsetMembers`; the deeper
   * levels and the listings inside those parents are answered from it. A
   * scan below the snapshot reads the whole table to find its buckets'
   * members (the bucket is a hash of the id: no index finds it), so this
   * turns one scan per level and one per listing into one.
   */
  async function readSubset(within: { bits: number; prefixes: readonly bigint[] }) {
    if (!snapshot || !fresh(snapshot.at) || within.bits < snapshot.bits) return undefined;
    const startedIn = generation;
    const up = BigInt(within.bits - snapshot.bits);
    const holders = new Set(within.prefixes.map((p) => p >> up));
    let bound = 0;
    for (const prefix of holders) bound += snapshot.buckets.get(prefix)?.count ?? 0;
    if (bound > maxSubsetMembers) return undefined;
    const result = await run<SubsetRow>(subsetSql, [64 - within.bits, within.prefixes.map(String)]);
    const read: Subset = {
      generation: startedIn,
      bits: within.bits,
      parents: new Set(within.prefixes),
      at: now(),
      // In the byte order of UTF-8, as `after` compares (the database's own order of
      // COLLATE "C" is the same only when its encoding is UTF8). Rows are checked as
      // members only when listed: a bad version elsewhere in a bucket does not fail a digest.
      members: result.rows
        // A NULL member hash (a source's NULL version) is counted and XORs nothing, as in `bit_xor`.
        .map((row) => ({ row, h: BigInt(row.h), hv: row.hv === null ? 0n : BigInt(row.hv) }))
        .sort((a, b) => compareIds(a.row.id, b.row.id)),
    };
    if (startedIn === generation) subset = read;
    return read;
  }

  /** The current subset, when it holds every bucket of `prefixes` at `bits`. */
  function subsetHolding(bits: number, prefixes: readonly bigint[]): Subset | undefined {
    if (!subset || subset.generation !== generation || !fresh(subset.at) || bits < subset.bits)
      return undefined;
    const up = BigInt(bits - subset.bits);
    const parents = subset.parents;
    return prefixes.every((p) => parents.has(p >> up)) ? subset : undefined;
  }

  return {
    async digest(request: DigestRequest): Promise<Map<bigint, BucketDigest>> {
      if (!request.within) {
        const bits = Math.max(request.bits, snapshotBits);
        const mine = ++generation;
        subset = undefined;
        const taken = { bits, at: now(), buckets: await scan({ bits }) };
        if (mine === generation) snapshot = taken; // a newer one started meanwhile: keep that
        return rollUp(taken.buckets, bits, request);
      }
      if (snapshot && request.bits <= snapshot.bits && fresh(snapshot.at)) {
        return rollUp(snapshot.buckets, snapshot.bits, request);
      }
      const held =
        subsetHolding(request.within.bits, request.within.prefixes) ??
        (await readSubset(request.within));
      return held ? digestOf(held, request) : scan(request);
    },

    async members(request: MembersRequest): Promise<Member[]> {
      const held = subsetHolding(request.bits, request.prefixes);
      if (held) return membersOf(held, request);
      const result = await run<MemberRow>(membersSql, [
        64 - request.bits,
        request.prefixes.map(String),
        request.after ?? null,
        request.limit,
      ]);
      return result.rows.map(toMember);
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
  /**
   * Most members read at once for the levels below the snapshot (default
   * 100,000; 0 scans at every level): see `readSubset`.
   */
  maxSubsetMembers?: number;
  now?: () => number;
}

/**
 * The whole-set digest is one scan of every member: let PostgreSQL split it
 * over its parallel workers (within the server's own
 * `max_parallel_workers_per_gather`) — it would not for a statement whose
 * every row it must send, although the aggregate sends 65,536 — and give the
 * aggregate room for 65,536 groups, which it would otherwise plan for as many
 * groups as ids and spill to disk. 10,000,000 owner rows alone: 14.4 s
 * serial, 9.5 s with two workers on two cores (bench/README.md, "reconcile").
 */
const WHOLE_SET_SETUP =
  "SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0; SET LOCAL work_mem = '16MB'";

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
    addTo(buckets, prefix >> shift, d.count, d.xor);
  }
  return buckets;
}

/** Adds `count` members whose hashes XOR to `xor` to bucket `prefix`. */
function addTo(buckets: Map<bigint, BucketDigest>, prefix: bigint, count: number, xor: bigint) {
  const sum = buckets.get(prefix);
  if (sum) {
    sum.count += count;
    sum.xor ^= xor;
  } else buckets.set(prefix, { count, xor });
}

interface MemberRow {
  id: string;
  version: string | null;
  content: string | null;
}

interface SubsetRow extends MemberRow {
  h: string;
  hv: string | null;
}

interface Subset {
  /** The whole-set digest generation it was read in. */
  generation: number;
  bits: number;
  parents: ReadonlySet<bigint>;
  at: number;
  /** In UTF-8 byte order of their ids (`compareIds`). */
  members: { row: MemberRow; h: bigint; hv: bigint }[];
}

function toMember(row: MemberRow): Member {
  const version = row.version === null ? Number.NaN : Number(row.version);
  if (!Number.isSafeInteger(version)) {
    throw new SetSideProtocolError(
      `member ${JSON.stringify(row.id)} has version ${row.version}: versions must be non-NULL integers within ±2^53`,
    );
  }
  return row.content === null
    ? { id: row.id, version }
    : { id: row.id, version, content: BigInt(row.content) };
}

/** Digests at `request.bits` inside `request.within`, from a subset that holds them. */
function digestOf(held: Subset, request: DigestRequest): Map<bigint, BucketDigest> {
  const within = request.within as NonNullable<DigestRequest['within']>;
  const parents = new Set(within.prefixes);
  const buckets = new Map<bigint, BucketDigest>();
  for (const m of held.members) {
    if (parents.has(bucketOf(m.h, within.bits)))
      addTo(buckets, bucketOf(m.h, request.bits), 1, m.hv);
  }
  return buckets;
}

/** A page of the members of `request.prefixes`, from a subset that holds them. */
function membersOf(held: Subset, request: MembersRequest): Member[] {
  const wanted = new Set(request.prefixes);
  const page: Member[] = [];
  for (const m of held.members) {
    if (page.length >= request.limit) break;
    if (!wanted.has(bucketOf(m.h, request.bits))) continue;
    if (request.after !== undefined && compareIds(m.row.id, request.after) <= 0) continue;
    page.push(toMember(m.row));
  }
  return page;
}

interface DigestRow {
  p: string;
  n: string;
  x: string;
}
