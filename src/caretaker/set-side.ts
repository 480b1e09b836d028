import { BatonError } from '../core/errors.ts';

/**
 * One side of a set reconciliation: a set of (id, version) pairs — an
 * owner's entities, or a referrer's replica of them — that can answer two
 * questions about its hash buckets.
 *
 * Buckets. Every id has a 64-bit hash `h` (signed). The bucket of an id at
 * level `bits` (1..64) is `h >> (64 - bits)` (arithmetic shift), its
 * `prefix`. Levels nest: the children of a bucket at `bits` are the buckets
 * at `bits + k` whose prefix shifted right by `k` is the parent's. Both sides
 * of one reconciliation must hash alike (the SQL side uses PostgreSQL's
 * `hashtextextended`).
 *
 * Shape, and why it is not two positional methods: each call is one object
 * that maps one to one onto the JSON body of the HTTP protocol
 * (set-side-wire.ts), so the in-process side, the HTTP client and the HTTP
 * handler share one validator; and `members` pages (`after`, `limit`), so an
 * answer stays bounded however large a bucket that differs wildly is.
 */
export interface SetSide {
  /**
   * Digest of every non-empty bucket at level `bits`, optionally only of
   * those inside the listed parent buckets (`within`). Empty buckets are
   * absent from the map. One scan of the set per call.
   */
  digest(request: DigestRequest): Promise<Map<bigint, BucketDigest>>;
  /**
   * Members of the listed buckets, ordered by id in byte order (PostgreSQL
   * `COLLATE "C"`), ids greater than `after` only, at most `limit`. A page
   * shorter than `limit` is the last.
   */
  members(request: MembersRequest): Promise<Member[]>;
  /** Bytes exchanged so far, when the side is remote (or metered). */
  readonly traffic?: SetSideTraffic;
}

export interface Member {
  id: string;
  version: number;
  /**
   * Hash of what else must be equal (an entity's state and fields), when the
   * side has it: it tells a copy edited at an unchanged version from the
   * original.
   */
  content?: bigint;
}

/** Count and XOR of the members' (id, version[, content]) hashes: equal digests mean equal buckets (false match ≈ 2^-64). */
export interface BucketDigest {
  count: number;
  xor: bigint;
}

export interface DigestRequest {
  bits: number;
  within?: { bits: number; prefixes: readonly bigint[] };
}

export interface MembersRequest {
  bits: number;
  prefixes: readonly bigint[];
  after?: string;
  limit: number;
}

/** Body bytes of requests and responses (JSON as on the wire), and round trips. */
export interface SetSideTraffic {
  calls: number;
  requestBytes: number;
  responseBytes: number;
}

/**
 * Bounds every side enforces on a request, so that one call — from a bug or
 * a hostile caller — cannot ask for an unbounded answer.
 */
export const SET_SIDE_LIMITS = {
  /** Parent or listed prefixes per call. */
  maxPrefixes: 65_536,
  /** How many levels one digest call may descend (`bits - within.bits`). */
  maxDescent: 8,
  /** Level of a digest over the whole set (no `within`). */
  maxTopBits: 16,
  /** `prefixes × 2^descent`: the most buckets one digest may answer. */
  maxBuckets: 1 << 20,
  /** Members per page. */
  maxPageSize: 100_000,
  /** Characters of an id (`after`). */
  maxIdLength: 4096,
} as const;

/**
 * How members are hashed into digests and content checksums: both sides of
 * one reconciliation must hash alike, or every bucket differs (a run would
 * still be right, at the cost of listing everything). Every request over the
 * wire names it and a side of another scheme refuses the request by name.
 * Bump it with any change to a hash (sql-set-side.ts, `liveContentSql`).
 *   1 — text hashes of `id:version:content` (before scheme numbers were sent)
 *   2 — integer hashes chained from the bucket hash, over both 32-bit halves
 */
export const SET_SIDE_HASH_SCHEME = 2;

/** A side answered something the protocol does not allow (a bug, or a peer that is not Baton). */
export class SetSideProtocolError extends BatonError {
  constructor(message: string) {
    super('BATON_SET_SIDE_PROTOCOL', message);
  }
}

/** The bucket of a 64-bit hash at `bits`. */
export function bucketOf(hash: bigint, bits: number): bigint {
  return BigInt.asIntN(64, hash) >> BigInt(64 - bits);
}

/** Whether `prefix` names a bucket at `bits`: -2^(bits-1) ≤ prefix < 2^(bits-1). */
export function isPrefix(prefix: bigint, bits: number): boolean {
  const half = 1n << BigInt(bits - 1);
  return prefix >= -half && prefix < half;
}

/** The parent of a bucket `descent` levels up. */
export function parentOf(prefix: bigint, descent: number): bigint {
  return prefix >> BigInt(descent);
}

/** Byte order of UTF-8, the order of `COLLATE "C"`: what `members` pages by. */
export function compareIds(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
