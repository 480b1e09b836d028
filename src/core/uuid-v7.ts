import { randomBytes } from 'node:crypto';

/**
 * A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits. Ids of one
 * process are strictly increasing: within one millisecond the random tail is
 * replaced by an incremented counter, so sorting by id sorts by creation.
 * (Never used for delivery order — see the relay — only for unique, index-
 * friendly ids.)
 */
let lastMs = 0;
let lastTail = 0n;
const TAIL_BITS = 74n;
const TAIL_MASK = (1n << TAIL_BITS) - 1n;

export function uuidv7(now: number = Date.now()): string {
  let tail: bigint;
  if (now <= lastMs && lastTail < TAIL_MASK) {
    now = lastMs;
    tail = lastTail + 1n;
  } else {
    tail = BigInt(`0x${randomBytes(10).toString('hex')}`) & TAIL_MASK;
  }
  lastMs = now;
  lastTail = tail;
  const randA = (tail >> 62n) & 0xfffn; // 12 bits
  const randB = tail & ((1n << 62n) - 1n); // 62 bits
  const hex =
    BigInt(now).toString(16).padStart(12, '0') +
    (0x7000n | randA).toString(16).padStart(4, '0') +
    ((0b10n << 62n) | randB).toString(16).padStart(16, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}
