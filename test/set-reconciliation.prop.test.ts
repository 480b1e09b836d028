import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { handleSetSideRequest } from '../src/caretaker/http-set-side.ts';
import {
  type ReconcileOptions,
  reconcileSets,
  type SetDifference,
} from '../src/caretaker/set-reconciliation.ts';
import type { BucketDigest, Member, SetSide } from '../src/caretaker/set-side.ts';
import {
  decodeDigestResponse,
  decodeMembersResponse,
  encodeMembersResponse,
  encodeRequest,
  jsonBytes,
  type SetSideRequest,
} from '../src/caretaker/set-side-wire.ts';

/**
 * Checksum bisection against a model: for random sets and random
 * differences, `reconcileSets` recovers exactly the symmetric difference
 * (ids only on one side, and versions that differ), under random tuning
 * (levels, fan-out, leaf size, page size, parents per call) so that every
 * path runs: listing at the top, splitting, paging, chunking, and listing at
 * 64 bits when ids collide. The owner side goes through the JSON protocol
 * (encode → validate → serve → decode) on every call.
 */

type Hashing = 'strong' | 'colliding';

function hash64(text: string, seed: number): bigint {
  return createHash('sha256').update(`${seed}\u0001${text}`).digest().readBigInt64BE(0);
}

/** An in-memory side. `colliding` keeps 3 bits of the bucket hash, so distinct ids share a bucket down to 64 bits. */
function memorySide(members: readonly Member[], hashing: Hashing): SetSide {
  const mask = hashing === 'colliding' ? -(1n << 61n) : -1n;
  const rows = members.map((m) => ({
    ...m,
    h: hash64(m.id, 0) & mask,
    hv: hash64(`${m.id}:${m.version}`, 1),
    key: Buffer.from(m.id, 'utf8'),
  }));
  return {
    async digest({ bits, within }) {
      const parents = within ? new Set(within.prefixes) : undefined;
      const parentShift = BigInt(64 - (within?.bits ?? 64));
      const shift = BigInt(64 - bits);
      const buckets = new Map<bigint, BucketDigest>();
      for (const r of rows) {
        if (parents && !parents.has(r.h >> parentShift)) continue;
        const prefix = r.h >> shift;
        const d = buckets.get(prefix);
        if (d) {
          d.count += 1;
          d.xor ^= r.hv;
        } else buckets.set(prefix, { count: 1, xor: r.hv });
      }
      return buckets;
    },
    async members({ bits, prefixes, after, limit }) {
      const wanted = new Set(prefixes);
      const shift = BigInt(64 - bits);
      const afterKey = after === undefined ? undefined : Buffer.from(after, 'utf8');
      return rows
        .filter(
          (r) =>
            wanted.has(r.h >> shift) &&
            (afterKey === undefined || Buffer.compare(r.key, afterKey) > 0),
        )
        .sort((a, b) => Buffer.compare(a.key, b.key))
        .slice(0, limit)
        .map(({ id, version }) => ({ id, version }));
    },
  };
}

/** Routes every call through the wire format and the server-side validator, as over HTTP. */
function viaWire(side: SetSide): SetSide {
  const roundTrip = async (request: SetSideRequest) => {
    const body = JSON.parse(JSON.stringify(encodeRequest(request)));
    const answer = await handleSetSideRequest(side, body);
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return JSON.parse(JSON.stringify(answer.body));
  };
  return {
    digest: async (request) =>
      decodeDigestResponse(await roundTrip({ op: 'digest', ...request }), request),
    members: async (request) =>
      decodeMembersResponse(await roundTrip({ op: 'members', ...request }), request),
  };
}

function expectedDifference(owner: readonly Member[], replica: readonly Member[]): SetDifference {
  const r = new Map(replica.map((m) => [m.id, m.version]));
  const o = new Map(owner.map((m) => [m.id, m.version]));
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

// Ids as PostgreSQL text can hold them: any Unicode except NUL; short numeric ones collide often.
const idArb = fc.oneof(
  fc.nat({ max: 1_000_000 }).map(String),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter((s) => !s.includes('\u0000')),
);
const versionArb = fc.nat({ max: 50 });
// Small sets often (edge cases shrink there), sets of up to `maxLength` as often.
const setArb = (maxLength: number) =>
  fc
    .oneof(
      fc.uniqueArray(fc.tuple(idArb, versionArb), { maxLength, selector: ([id]) => id }),
      fc.uniqueArray(fc.tuple(idArb, versionArb), {
        maxLength,
        size: 'max',
        selector: ([id]) => id,
      }),
    )
    .map((pairs) => pairs.map(([id, version]) => ({ id, version })));

type Kind =
  | 'identical'
  | 'single'
  | 'random'
  | 'all-versions'
  | 'disjoint'
  | 'replica-empty'
  | 'owner-empty';

/** A replica derived from the owner by a kind of difference. */
const scenarioArb = (maxLength: number) =>
  fc
    .record({
      owner: setArb(maxLength),
      kind: fc.constantFrom<Kind>(
        'identical',
        'single',
        'random',
        'all-versions',
        'disjoint',
        'replica-empty',
        'owner-empty',
      ),
      extra: setArb(50),
      rate: fc.double({ min: 0, max: 0.3, noNaN: true }),
      seed: fc.nat(),
    })
    .map(({ owner, kind, extra, rate, seed }) => {
      let state = seed;
      const random = () => {
        state = (state * 1103515245 + 12345) % 2 ** 31;
        return state / 2 ** 31;
      };
      const ownerIds = new Set(owner.map((m) => m.id));
      const extras = extra.filter((m) => !ownerIds.has(m.id));
      switch (kind) {
        case 'identical':
          return { kind, owner, replica: owner.map((m) => ({ ...m })) };
        case 'single': {
          const replica = owner.map((m) => ({ ...m }));
          const i = Math.floor(random() * replica.length);
          const pick = Math.floor(random() * 3);
          if (replica.length === 0 || pick === 0) replica.push(...extras.slice(0, 1));
          else if (pick === 1) replica.splice(i, 1);
          else (replica[i] as Member).version += 1;
          return { kind, owner, replica };
        }
        case 'random': {
          const replica: Member[] = [];
          for (const m of owner) {
            const roll = random();
            if (roll < rate / 2) continue; // lost upsert
            replica.push(roll < rate ? { id: m.id, version: m.version + 1 } : { ...m });
          }
          return { kind, owner, replica: [...replica, ...extras] };
        }
        case 'all-versions':
          return { kind, owner, replica: owner.map((m) => ({ id: m.id, version: m.version + 1 })) };
        case 'disjoint':
          return {
            kind,
            owner,
            replica: owner.map((m) => ({ id: `x${m.id}`, version: m.version })),
          };
        case 'replica-empty':
          return { kind, owner, replica: [] };
        default: // 'owner-empty'
          return { kind, owner: [] as Member[], replica: owner };
      }
    });

const optionsArb: fc.Arbitrary<ReconcileOptions> = fc.record({
  topBits: fc.integer({ min: 1, max: 10 }),
  splitBits: fc.integer({ min: 1, max: 5 }),
  leafSize: fc.integer({ min: 1, max: 80 }),
  maxParentsPerCall: fc.integer({ min: 1, max: 64 }),
  pageSize: fc.integer({ min: 1, max: 300 }),
});

describe('set reconciliation (checksum bisection)', () => {
  it('recovers exactly the symmetric difference', async () => {
    await fc.assert(
      fc.asyncProperty(
        scenarioArb(2000),
        optionsArb,
        fc.constantFrom<Hashing>('strong', 'strong', 'colliding'),
        async ({ owner, replica }, options, hashing) => {
          const result = await reconcileSets(
            viaWire(memorySide(owner, hashing)),
            memorySide(replica, hashing),
            options,
          );
          const { stats, ...difference } = result;
          expect(difference).toEqual(expectedDifference(owner, replica));
          expect(stats.owner.calls).toBeGreaterThan(0);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('recovers large differences from sets of a few thousand, with default tuning', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb(4000), async ({ owner, replica }) => {
        const { stats, ...difference } = await reconcileSets(
          memorySide(owner, 'strong'),
          memorySide(replica, 'strong'),
        );
        expect(difference).toEqual(expectedDifference(owner, replica));
        // Never more than listing both sides in full.
        expect(stats.membersListed.owner).toBeLessThanOrEqual(owner.length);
        expect(stats.membersListed.replica).toBeLessThanOrEqual(replica.length);
      }),
      { numRuns: 25 },
    );
  });

  it('exchanges far fewer bytes with the owner than streaming its set, for a small difference', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 10_000, max: 20_000 }),
        fc.integer({ min: 0, max: 5 }),
        fc.nat(),
        async (size, changes, seed) => {
          const owner = Array.from({ length: size }, (_, i) => ({
            id: `c${seed}-${i}`,
            version: 1,
          }));
          const replica = owner.map((m) => ({ ...m }));
          for (let k = 0; k < changes; k++) {
            const i = (seed + k * 7919) % replica.length;
            if (k % 3 === 0) replica.splice(i, 1);
            else if (k % 3 === 1) (replica[i] as Member).version += 1;
            else replica.push({ id: `orphan-${k}`, version: 1 });
          }
          const result = await reconcileSets(
            memorySide(owner, 'strong'),
            memorySide(replica, 'strong'),
          );
          const { stats, ...difference } = result;
          expect(difference).toEqual(expectedDifference(owner, replica));
          const naive = jsonBytes(encodeMembersResponse(owner));
          const exchanged = stats.owner.requestBytes + stats.owner.responseBytes;
          expect(exchanged).toBeLessThan(naive / 10);
        },
      ),
      { numRuns: 15 },
    );
  });
});
