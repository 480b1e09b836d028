import type { Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';

/**
 * Where a verifier remembers the nonces of the requests it accepted, until
 * they expire. `remember` is true when the nonce is new (or its earlier use
 * has expired), false for a replay.
 */
export interface NonceStore {
  remember(nonce: string, expiresAt: number, now: number): Promise<boolean>;
}

/**
 * Nonces in the service's database (`seen_nonces`): shared by every instance
 * of the service and kept across restarts. One autocommit statement per
 * accepted request; expired rows are swept at most every `sweepEveryMs`.
 */
export class DatabaseNonces implements NonceStore {
  private nextSweep = 0;

  constructor(
    private readonly db: Executor,
    private readonly schemaSql: string,
    private readonly sweepEveryMs = 10_000,
  ) {}

  async remember(nonce: string, expiresAt: number, now: number): Promise<boolean> {
    if (now >= this.nextSweep) {
      this.nextSweep = now + this.sweepEveryMs;
      await queryPrepared(
        this.db,
        `DELETE FROM ${this.schemaSql}.seen_nonces WHERE expires_at < $1`,
        [now],
      );
    }
    // A row comes back when the nonce is new, or seen before but expired since.
    const taken = await queryPrepared(
      this.db,
      `INSERT INTO ${this.schemaSql}.seen_nonces AS s (nonce, expires_at) VALUES ($1, $2)
       ON CONFLICT (nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE s.expires_at < $3
       RETURNING 1`,
      [nonce, expiresAt, now],
    );
    return taken.rows.length === 1;
  }

  /** Whether `nonce` is remembered and not expired (without remembering it). */
  async has(nonce: string, now: number): Promise<boolean> {
    const r = await queryPrepared(
      this.db,
      `SELECT 1 FROM ${this.schemaSql}.seen_nonces WHERE nonce = $1 AND expires_at >= $2`,
      [nonce, now],
    );
    return r.rows.length === 1;
  }
}

/**
 * Nonces in this process's memory: for a verifier with no database (a feed
 * served by a process of its own, tests). Refuses replays to this process
 * only — a restart or another instance forgets them.
 */
export class MemoryNonces implements NonceStore {
  private readonly seen = new Map<string, number>();

  /** How many nonces are remembered now (they are forgotten once expired). */
  get size(): number {
    return this.seen.size;
  }

  async remember(nonce: string, expiresAt: number, now: number): Promise<boolean> {
    this.forgetExpired(now);
    const expires = this.seen.get(nonce);
    if (expires !== undefined && expires >= now) return false;
    // Re-inserted at the end, so the map stays in expiry order.
    this.seen.delete(nonce);
    this.seen.set(nonce, expiresAt);
    return true;
  }

  /**
   * Drops expired nonces from the front. A Map iterates in insertion order and
   * every nonce gets the same lifetime, so the oldest come first: each call
   * stops at the first live one — constant work per request, however many
   * requests the window holds. (A clock stepping back only delays forgetting.)
   */
  private forgetExpired(now: number): void {
    for (const [nonce, expires] of this.seen) {
      if (expires >= now) return;
      this.seen.delete(nonce);
    }
  }
}
