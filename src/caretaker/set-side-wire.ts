import { findUnsafeJson } from '../core/json-safety.ts';
import {
  type BucketDigest,
  type DigestRequest,
  isPrefix,
  type Member,
  type MembersRequest,
  SET_SIDE_HASH_SCHEME,
  SET_SIDE_LIMITS,
  type SetSide,
  SetSideProtocolError,
  type SetSideTraffic,
} from './set-side.ts';

/**
 * The JSON protocol of a `SetSide` (one POST body per call). Prefixes travel
 * as decimal strings; arrays instead of objects, and positional digest
 * answers with base64url checksums, keep the answers — the bulk of the
 * traffic — small.
 *
 *   {"scheme":2,"op":"digest","bits":12,"within":{"bits":8,"prefixes":["-3","5"]}}
 *     → {"children":[[244,"j3xQ0pB9e2U"],0, …]}   (per child in order: 0 or [count, checksum])
 *   {"scheme":2,"op":"members","bits":16,"prefixes":["-770"],"after":"c17","limit":10000}
 *     → {"members":[["c18",3], …]}               (id, version[, content checksum])
 *
 * Requests are validated strictly (unknown fields, wrong types, values out of
 * range are refused with the reason); so are answers, on the client. A
 * request of another hash scheme (`SET_SIDE_HASH_SCHEME`) is refused first,
 * by name: its digests would differ from this side's in every bucket.
 */
export type SetSideRequest =
  | ({ op: 'digest' } & DigestRequest)
  | ({ op: 'members' } & MembersRequest);

type Decoded<T> =
  | { ok: true; value: T }
  | { ok: false; reason: string; code?: 'BATON_HASH_SCHEME' };

const INT64 = /^(0|-?[1-9][0-9]{0,18})$/;
const MIN_INT64 = -(1n << 63n);
const MAX_INT64 = (1n << 63n) - 1n;

export function encodeRequest(request: SetSideRequest): unknown {
  const scheme = SET_SIDE_HASH_SCHEME;
  if (request.op === 'digest') {
    return request.within
      ? {
          scheme,
          op: 'digest',
          bits: request.bits,
          within: { bits: request.within.bits, prefixes: request.within.prefixes.map(String) },
        }
      : { scheme, op: 'digest', bits: request.bits };
  }
  const body: Record<string, unknown> = {
    scheme,
    op: 'members',
    bits: request.bits,
    prefixes: request.prefixes.map(String),
    limit: request.limit,
  };
  if (request.after !== undefined) body.after = request.after;
  return body;
}

/** Validates a request body; the reason says what is wrong, with the value. */
export function decodeRequest(body: unknown): Decoded<SetSideRequest> {
  if (!isPlainObject(body)) return fail('the body must be a JSON object');
  if (body.scheme !== SET_SIDE_HASH_SCHEME) return otherScheme(body.scheme);
  if (body.op === 'digest') return decodeDigestRequest(body);
  if (body.op === 'members') return decodeMembersRequest(body);
  return fail('"op" must be "digest" or "members"');
}

function otherScheme(scheme: unknown): Decoded<never> {
  const named =
    scheme === undefined
      ? 'names no hash scheme: its sender runs a Baton release from before hash schemes were named'
      : `names hash scheme ${show(scheme)}`;
  return {
    ok: false,
    code: 'BATON_HASH_SCHEME',
    reason: `the request ${named}; this side hashes with scheme ${SET_SIDE_HASH_SCHEME}. Run the same Baton release on the owner and the referrer: digests of two schemes differ in every bucket`,
  };
}

function decodeDigestRequest(body: Record<string, unknown>): Decoded<SetSideRequest> {
  const unknown = unknownKeys(body, ['scheme', 'op', 'bits', 'within']);
  if (unknown) return fail(unknown);
  const bits = decodeBits(body.bits, '"bits"', 1, 64);
  if (!bits.ok) return bits;
  if (body.within === undefined) {
    if (bits.value > SET_SIDE_LIMITS.maxTopBits) {
      return fail(
        `"bits" is ${bits.value}: a digest of the whole set goes at most to ${SET_SIDE_LIMITS.maxTopBits} bits; descend with "within"`,
      );
    }
    return { ok: true, value: { op: 'digest', bits: bits.value } };
  }
  const within = body.within;
  if (!isPlainObject(within)) return fail('"within" must be an object {bits, prefixes}');
  const unknownWithin = unknownKeys(within, ['bits', 'prefixes'], '"within"');
  if (unknownWithin) return fail(unknownWithin);
  const parentBits = decodeBits(within.bits, '"within.bits"', 1, 63);
  if (!parentBits.ok) return parentBits;
  const descent = bits.value - parentBits.value;
  if (descent < 1 || descent > SET_SIDE_LIMITS.maxDescent) {
    return fail(
      `"bits" (${bits.value}) must be 1 to ${SET_SIDE_LIMITS.maxDescent} more than "within.bits" (${parentBits.value})`,
    );
  }
  const prefixes = decodePrefixes(within.prefixes, parentBits.value, '"within.prefixes"');
  if (!prefixes.ok) return prefixes;
  if (prefixes.value.length * 2 ** descent > SET_SIDE_LIMITS.maxBuckets) {
    return fail(
      `${prefixes.value.length} parents descending ${descent} bits could answer more than ${SET_SIDE_LIMITS.maxBuckets} buckets; send fewer parents per call`,
    );
  }
  return {
    ok: true,
    value: {
      op: 'digest',
      bits: bits.value,
      within: { bits: parentBits.value, prefixes: prefixes.value },
    },
  };
}

function decodeMembersRequest(body: Record<string, unknown>): Decoded<SetSideRequest> {
  const unknown = unknownKeys(body, ['scheme', 'op', 'bits', 'prefixes', 'after', 'limit']);
  if (unknown) return fail(unknown);
  const bits = decodeBits(body.bits, '"bits"', 1, 64);
  if (!bits.ok) return bits;
  const prefixes = decodePrefixes(body.prefixes, bits.value, '"prefixes"');
  if (!prefixes.ok) return prefixes;
  const limit = body.limit;
  if (
    !Number.isInteger(limit) ||
    (limit as number) < 1 ||
    (limit as number) > SET_SIDE_LIMITS.maxPageSize
  ) {
    return fail(
      `"limit" must be an integer from 1 to ${SET_SIDE_LIMITS.maxPageSize} (got ${show(limit)})`,
    );
  }
  const value: SetSideRequest = {
    op: 'members',
    bits: bits.value,
    prefixes: prefixes.value,
    limit: limit as number,
  };
  if (body.after !== undefined) {
    if (typeof body.after !== 'string' || body.after.length > SET_SIDE_LIMITS.maxIdLength) {
      return fail(
        `"after" must be an id: a string of at most ${SET_SIDE_LIMITS.maxIdLength} characters`,
      );
    }
    const problem = findUnsafeJson(body.after);
    if (problem) return fail(`"after" is not an id: ${problem.replace('$: ', '')}`);
    value.after = body.after;
  }
  return { ok: true, value };
}

/**
 * A digest answer is positional: for each parent in request order (the whole
 * set when there is no `within`), its 2^descent children in prefix order,
 * each `0` when empty or `[count, checksum]`. Prefixes are implied, so they
 * cost nothing; the checksum — an opaque 64-bit value nobody reads — is the
 * base64url of its 8 bytes (11 characters, not up to 20 as decimal). These
 * answers are most of the traffic.
 */
export function encodeDigestResponse(
  buckets: ReadonlyMap<bigint, BucketDigest>,
  request: DigestRequest,
): unknown {
  const children: unknown[] = [];
  for (const prefix of childPrefixes(request)) {
    const d = buckets.get(prefix);
    children.push(d ? [d.count, encodeChecksum(d.xor)] : 0);
  }
  return { children };
}

/** Decodes a digest answer (see `encodeDigestResponse`): exactly one entry per child asked for. */
export function decodeDigestResponse(
  body: unknown,
  request: DigestRequest,
): Map<bigint, BucketDigest> {
  if (!isPlainObject(body) || !Array.isArray(body.children) || Object.keys(body).length !== 1) {
    throw protocol('a digest answer must be {"children": [...]}');
  }
  const entries = body.children as unknown[];
  const expected = childCount(request);
  if (entries.length !== expected) {
    throw protocol(`digest answer has ${entries.length} children; ${expected} were asked for`);
  }
  const buckets = new Map<bigint, BucketDigest>();
  let i = 0;
  for (const prefix of childPrefixes(request)) {
    const entry = entries[i++];
    if (entry === 0) continue;
    const [count, checksum] = Array.isArray(entry) && entry.length === 2 ? entry : [];
    const xor = decodeChecksum(checksum);
    if (!Number.isSafeInteger(count) || (count as number) < 1 || xor === undefined) {
      throw protocol(`digest child ${prefix} is not 0 or [count, checksum]: ${show(entry)}`);
    }
    buckets.set(prefix, { count: count as number, xor });
  }
  return buckets;
}

/** The children a digest request asks for, in answer order. */
function* childPrefixes(request: DigestRequest): Generator<bigint> {
  if (!request.within) {
    const half = 1n << BigInt(request.bits - 1);
    for (let p = -half; p < half; p++) yield p;
    return;
  }
  const descent = BigInt(request.bits - request.within.bits);
  const width = 1n << descent;
  for (const parent of request.within.prefixes) {
    const first = parent << descent;
    for (let i = 0n; i < width; i++) yield first + i;
  }
}

function childCount(request: DigestRequest): number {
  return request.within
    ? request.within.prefixes.length * 2 ** (request.bits - request.within.bits)
    : 2 ** request.bits;
}

function encodeChecksum(xor: bigint): string {
  const bytes = Buffer.alloc(8);
  bytes.writeBigInt64BE(BigInt.asIntN(64, xor));
  return bytes.toString('base64url');
}

const CHECKSUM = /^[A-Za-z0-9_-]{10}[AEIMQUYcgkosw048]$/;

function decodeChecksum(value: unknown): bigint | undefined {
  if (typeof value !== 'string' || !CHECKSUM.test(value)) return undefined;
  return Buffer.from(value, 'base64url').readBigInt64BE(0);
}

export function encodeMembersResponse(members: readonly Member[]): unknown {
  return {
    members: members.map((m) =>
      m.content === undefined ? [m.id, m.version] : [m.id, m.version, encodeChecksum(m.content)],
    ),
  };
}

/** Decodes a members page, checking size, types and order (ids ascending in byte order, after `after`). */
export function decodeMembersResponse(body: unknown, request: MembersRequest): Member[] {
  if (!isPlainObject(body) || !Array.isArray(body.members) || Object.keys(body).length !== 1) {
    throw protocol('a members answer must be {"members": [...]}');
  }
  const rows = body.members as unknown[];
  if (rows.length > request.limit) {
    throw protocol(`members page has ${rows.length} rows, more than the limit ${request.limit}`);
  }
  const members: Member[] = [];
  let previous = request.after === undefined ? undefined : Buffer.from(request.after, 'utf8');
  for (const row of rows) {
    if (!Array.isArray(row) || row.length < 2 || row.length > 3)
      throw protocol(`member ${show(row)} is not [id, version] or [id, version, content]`);
    const [id, version, checksum] = row as unknown[];
    if (typeof id !== 'string' || !Number.isSafeInteger(version)) {
      throw protocol(`member ${show(row)} needs a string id and an integer version`);
    }
    const content = row.length === 3 ? decodeChecksum(checksum) : undefined;
    if (row.length === 3 && content === undefined) {
      throw protocol(
        `member ${show(row)} has a content checksum that is not 11 base64url characters`,
      );
    }
    const bytes = Buffer.from(id, 'utf8');
    if (previous && Buffer.compare(previous, bytes) >= 0) {
      throw protocol(`members page is not in ascending id order at ${show(id)}`);
    }
    previous = bytes;
    members.push(
      content === undefined
        ? { id, version: version as number }
        : { id, version: version as number, content },
    );
  }
  return members;
}

/**
 * Wraps an in-process side so that its traffic is counted as if it were
 * remote: each call's request and answer are encoded as on the wire.
 */
export function meteredSetSide(side: SetSide): SetSide & { traffic: SetSideTraffic } {
  const traffic: SetSideTraffic = { calls: 0, requestBytes: 0, responseBytes: 0 };
  const count = (request: SetSideRequest, response: unknown) => {
    traffic.calls += 1;
    traffic.requestBytes += jsonBytes(encodeRequest(request));
    traffic.responseBytes += jsonBytes(response);
  };
  return {
    traffic,
    async digest(request) {
      const buckets = await side.digest(request);
      count({ op: 'digest', ...request }, encodeDigestResponse(buckets, request));
      return buckets;
    },
    async members(request) {
      const members = await side.members(request);
      count({ op: 'members', ...request }, encodeMembersResponse(members));
      return members;
    },
  };
}

export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value), 'utf8');
}

function decodeBits(value: unknown, name: string, min: number, max: number): Decoded<number> {
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
    return fail(`${name} must be an integer from ${min} to ${max} (got ${show(value)})`);
  }
  return { ok: true, value: value as number };
}

function decodePrefixes(value: unknown, bits: number, name: string): Decoded<bigint[]> {
  if (!Array.isArray(value) || value.length === 0) {
    return fail(`${name} must be a non-empty array of decimal strings`);
  }
  if (value.length > SET_SIDE_LIMITS.maxPrefixes) {
    return fail(
      `${name} has ${value.length} entries; at most ${SET_SIDE_LIMITS.maxPrefixes} per call`,
    );
  }
  const prefixes: bigint[] = [];
  for (const item of value) {
    const prefix = decodeInt64(item);
    if (prefix === undefined || !isPrefix(prefix, bits)) {
      return fail(
        `${name} entry ${show(item)} is not a ${bits}-bit prefix written as a decimal string`,
      );
    }
    prefixes.push(prefix);
  }
  return { ok: true, value: prefixes };
}

function decodeInt64(value: unknown): bigint | undefined {
  if (typeof value !== 'string' || !INT64.test(value)) return undefined;
  const n = BigInt(value);
  return n < MIN_INT64 || n > MAX_INT64 ? undefined : n;
}

function unknownKeys(
  object: Record<string, unknown>,
  allowed: readonly string[],
  where = 'the body',
): string | undefined {
  const extra = Object.keys(object).filter((k) => !allowed.includes(k));
  return extra.length === 0
    ? undefined
    : `unknown field ${show(extra[0])} in ${where}; allowed: ${allowed.join(', ')}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function fail(reason: string): { ok: false; reason: string } {
  return { ok: false, reason };
}

function protocol(message: string): SetSideProtocolError {
  return new SetSideProtocolError(`set side answered out of protocol: ${message}`);
}

/** A short, safe rendering of a value for a message. */
function show(value: unknown): string {
  const text = typeof value === 'bigint' ? String(value) : JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
