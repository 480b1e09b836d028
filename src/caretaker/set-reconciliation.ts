import { InvalidInputError } from '../core/errors.ts';
import {
  type BucketDigest,
  type Member,
  SET_SIDE_LIMITS,
  type SetSide,
  type SetSideTraffic,
} from './set-side.ts';
import { meteredSetSide } from './set-side-wire.ts';

/**
 * Finds exactly the symmetric difference of an owner's (id, version) set and
 * a replica's, with traffic that grows with the difference, not the sets:
 * checksum bisection over aligned hash buckets (as data-diff does).
 *
 * 1. Digest all buckets at `topBits` on both sides (one scan each).
 * 2. Buckets whose digests match are equal (count and 64-bit XOR of the
 *    members' hashes; a false match has probability ≈ 2^-64) and are done.
 * 3. A differing bucket is listed exactly — both sides' members — when it is
 *    small (either side has at most `leafSize` members), when it differs
 *    wildly (|a − b| > max(a, b) / 2: the difference is most of it anyway,
 *    so streaming it costs at most 4× the difference), or at 64 bits.
 *    Otherwise it is split `2^splitBits` ways: all differing buckets of a
 *    level are digested at the next level together (one scan per side per
 *    level), while the leaves of the level are listed in parallel.
 * 4. The listings are diffed by id.
 *
 * Listing both sides of a bucket costs at most `|difference| + 2·leafSize`
 * rows, so the traffic is O(difference × levels × 2^splitBits) digests plus
 * O(difference + leaves × leafSize) members.
 *
 * Consistency: every call is its own scan, at its own moment. Run it after a
 * consistent cut (the replica caught up to the owner's watermark). A
 * difference that appears or heals during the run may be missed or reported;
 * callers re-check each reported difference by point reads, and the next run
 * finds what this one missed.
 */
export async function reconcileSets(
  owner: SetSide,
  replica: SetSide,
  options: ReconcileOptions = {},
): Promise<SetReconciliation> {
  const o = compileOptions(options);
  const started = performance.now();
  const sides = { owner: metered(owner), replica: metered(replica) };
  const before = { owner: { ...sides.owner.traffic }, replica: { ...sides.replica.traffic } };
  const stats = {
    levels: 1,
    bucketsCompared: 0,
    bucketsDiffering: 0,
    bucketsListed: 0,
    membersListed: { owner: 0, replica: 0 },
  };
  const listings = { owner: [] as Member[], replica: [] as Member[] };

  let bits = o.topBits;
  let digests = await both(sides, (side) => side.digest({ bits }));
  for (;;) {
    const { split, leaves, compared } = classify(digests.owner, digests.replica, bits, o);
    stats.bucketsCompared += compared;
    stats.bucketsDiffering += split.length + leaves.length;
    stats.bucketsListed += leaves.length;
    const nextBits = Math.min(64, bits + o.splitBits);
    const [listed, next] = await Promise.all([
      listBuckets(sides, bits, leaves, o),
      split.length > 0 ? digestChildren(sides, bits, nextBits, split, o) : undefined,
    ]);
    append(listings.owner, listed.owner);
    append(listings.replica, listed.replica);
    o.onLevel?.({
      bits,
      compared,
      differing: split.length + leaves.length,
      listed: leaves.length,
    });
    if (!next) break;
    digests = next;
    bits = nextBits;
    stats.levels += 1;
  }
  stats.membersListed = { owner: listings.owner.length, replica: listings.replica.length };
  return {
    ...diffListings(listings.owner, listings.replica),
    stats: {
      ...stats,
      owner: trafficSince(before.owner, sides.owner.traffic),
      replica: trafficSince(before.replica, sides.replica.traffic),
      ms: Math.round(performance.now() - started),
    },
  };
}

export interface ReconcileOptions {
  /** Level of the first digest: 2^topBits buckets (default 8, at most 16). */
  topBits?: number;
  /**
   * Each differing bucket splits into 2^splitBits children (default 2, at
   * most 8). Four children per level cost fewer bytes than sixteen (10,000,000
   * rows, 100 differences: 4 × 2 levels against 16 × 1 per difference); the
   * extra levels cost round trips, not scans (see `sqlSetSide`).
   */
  splitBits?: number;
  /**
   * A differing bucket is listed when either side has at most this many
   * members (default 32: about where listing costs as much as splitting).
   */
  leafSize?: number;
  /** Parents per digest call; each call is one scan per side (default 4096). */
  maxParentsPerCall?: number;
  /** Members per page when listing (default 10,000). */
  pageSize?: number;
  /** Called after each level, e.g. for a progress display. */
  onLevel?: (level: LevelReport) => void;
}

export interface LevelReport {
  bits: number;
  compared: number;
  differing: number;
  listed: number;
}

export interface VersionMismatch {
  id: string;
  ownerVersion: number;
  replicaVersion: number;
}

export interface SetDifference {
  onlyInOwner: Member[];
  onlyInReplica: Member[];
  versionMismatch: VersionMismatch[];
  /** Same version on both sides, other content (state or fields: a copy edited by hand, an owner written with triggers off). */
  contentMismatch: Member[];
}

export interface SetReconciliation extends SetDifference {
  stats: {
    /** Digest levels, each one scan per side (per parent chunk). */
    levels: number;
    bucketsCompared: number;
    bucketsDiffering: number;
    bucketsListed: number;
    membersListed: { owner: number; replica: number };
    /** Traffic with each side during this run (JSON bodies; metered when the side is in-process). */
    owner: SetSideTraffic;
    replica: SetSideTraffic;
    ms: number;
  };
}

type Compiled = Required<Omit<ReconcileOptions, 'onLevel'>> & Pick<ReconcileOptions, 'onLevel'>;
type Pair<T> = { owner: T; replica: T };
type Sides = Pair<SetSide & { traffic: SetSideTraffic }>;
interface Leaf {
  prefix: bigint;
  rows: number;
}

const EMPTY: BucketDigest = { count: 0, xor: 0n };

function compileOptions(options: ReconcileOptions): Compiled {
  const o: Compiled = {
    topBits: options.topBits ?? 8,
    splitBits: options.splitBits ?? 2,
    leafSize: options.leafSize ?? 32,
    maxParentsPerCall: options.maxParentsPerCall ?? 4096,
    pageSize: options.pageSize ?? 10_000,
    onLevel: options.onLevel,
  };
  const check = (name: keyof Compiled, value: number, min: number, max: number) => {
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new InvalidInputError(
        `reconcile option ${name} must be an integer from ${min} to ${max} (got ${value})`,
      );
    }
  };
  check('topBits', o.topBits, 1, SET_SIDE_LIMITS.maxTopBits);
  check('splitBits', o.splitBits, 1, SET_SIDE_LIMITS.maxDescent);
  check('leafSize', o.leafSize, 1, SET_SIDE_LIMITS.maxPageSize);
  check(
    'maxParentsPerCall',
    o.maxParentsPerCall,
    1,
    Math.min(SET_SIDE_LIMITS.maxPrefixes, SET_SIDE_LIMITS.maxBuckets / 2 ** o.splitBits),
  );
  check('pageSize', o.pageSize, 1, SET_SIDE_LIMITS.maxPageSize);
  return o;
}

function metered(side: SetSide): SetSide & { traffic: SetSideTraffic } {
  return side.traffic ? (side as SetSide & { traffic: SetSideTraffic }) : meteredSetSide(side);
}

async function both<T>(sides: Sides, call: (side: SetSide) => Promise<T>): Promise<Pair<T>> {
  const [owner, replica] = await Promise.all([call(sides.owner), call(sides.replica)]);
  return { owner, replica };
}

/** Splits the differing buckets of a level into those to descend into and those to list. */
function classify(
  a: ReadonlyMap<bigint, BucketDigest>,
  b: ReadonlyMap<bigint, BucketDigest>,
  bits: number,
  o: Compiled,
): { split: bigint[]; leaves: Leaf[]; compared: number } {
  const split: bigint[] = [];
  const leaves: Leaf[] = [];
  const prefixes = new Set([...a.keys(), ...b.keys()]);
  for (const prefix of prefixes) {
    const da = a.get(prefix) ?? EMPTY;
    const db = b.get(prefix) ?? EMPTY;
    if (da.count === db.count && da.xor === db.xor) continue;
    const small = Math.min(da.count, db.count) <= o.leafSize;
    const wild = Math.abs(da.count - db.count) > Math.max(da.count, db.count) / 2;
    if (bits === 64 || small || wild) leaves.push({ prefix, rows: da.count + db.count });
    else split.push(prefix);
  }
  return { split, leaves, compared: prefixes.size };
}

async function digestChildren(
  sides: Sides,
  parentBits: number,
  bits: number,
  parents: readonly bigint[],
  o: Compiled,
): Promise<Pair<Map<bigint, BucketDigest>>> {
  const merged = {
    owner: new Map<bigint, BucketDigest>(),
    replica: new Map<bigint, BucketDigest>(),
  };
  for (let i = 0; i < parents.length; i += o.maxParentsPerCall) {
    const within = { bits: parentBits, prefixes: parents.slice(i, i + o.maxParentsPerCall) };
    const part = await both(sides, (side) => side.digest({ bits, within }));
    for (const [k, v] of part.owner) merged.owner.set(k, v);
    for (const [k, v] of part.replica) merged.replica.set(k, v);
  }
  return merged;
}

/** Lists the leaves on both sides, in calls of about `pageSize` rows each, paging a bucket that is larger. */
async function listBuckets(
  sides: Sides,
  bits: number,
  leaves: readonly Leaf[],
  o: Compiled,
): Promise<Pair<Member[]>> {
  const listed = { owner: [] as Member[], replica: [] as Member[] };
  for (const prefixes of chunkByRows(leaves, o.pageSize)) {
    const part = await both(sides, (side) => listAll(side, bits, prefixes, o.pageSize));
    append(listed.owner, part.owner);
    append(listed.replica, part.replica);
  }
  return listed;
}

function chunkByRows(leaves: readonly Leaf[], pageSize: number): bigint[][] {
  const chunks: bigint[][] = [];
  let current: bigint[] = [];
  let rows = 0;
  for (const leaf of leaves) {
    if (
      current.length > 0 &&
      (rows + leaf.rows > pageSize || current.length >= SET_SIDE_LIMITS.maxPrefixes)
    ) {
      chunks.push(current);
      current = [];
      rows = 0;
    }
    current.push(leaf.prefix);
    rows += leaf.rows;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

async function listAll(
  side: SetSide,
  bits: number,
  prefixes: readonly bigint[],
  limit: number,
): Promise<Member[]> {
  const all: Member[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await side.members(
      after === undefined ? { bits, prefixes, limit } : { bits, prefixes, after, limit },
    );
    append(all, page);
    if (page.length < limit) return all;
    after = page[page.length - 1]?.id;
  }
}

/** The difference of two listings of the same buckets, sorted by id. */
export function diffListings(owner: readonly Member[], replica: readonly Member[]): SetDifference {
  const replicaMembers = new Map(replica.map((m) => [m.id, m]));
  const ownerIds = new Set<string>();
  const onlyInOwner: Member[] = [];
  const versionMismatch: VersionMismatch[] = [];
  const contentMismatch: Member[] = [];
  for (const m of owner) {
    ownerIds.add(m.id);
    const copy = replicaMembers.get(m.id);
    if (copy === undefined) onlyInOwner.push(m);
    else if (copy.version !== m.version) {
      versionMismatch.push({ id: m.id, ownerVersion: m.version, replicaVersion: copy.version });
    } else if (
      m.content !== undefined &&
      copy.content !== undefined &&
      m.content !== copy.content
    ) {
      contentMismatch.push(m);
    }
  }
  const onlyInReplica = replica.filter((m) => !ownerIds.has(m.id));
  const byId = (x: { id: string }, y: { id: string }) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
  return {
    onlyInOwner: onlyInOwner.sort(byId),
    onlyInReplica: onlyInReplica.sort(byId),
    versionMismatch: versionMismatch.sort(byId),
    contentMismatch: contentMismatch.sort(byId),
  };
}

/** `push(...source)` overflows the stack for very long arrays. */
function append<T>(target: T[], source: readonly T[]): void {
  for (const item of source) target.push(item);
}

function trafficSince(before: SetSideTraffic, now: SetSideTraffic): SetSideTraffic {
  return {
    calls: now.calls - before.calls,
    requestBytes: now.requestBytes - before.requestBytes,
    responseBytes: now.responseBytes - before.responseBytes,
  };
}
