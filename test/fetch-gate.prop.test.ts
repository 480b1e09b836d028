import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DeadLetterMode, readStatus } from '../src/index.ts';
import { FetchGate } from '../src/messaging/fetch-gate.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/*
 * The fetch loop's backpressure against a model: random inboxes — keys
 * (the empty one too) with runs of entries in every state, failed ones
 * among them, runs long enough to cross the walk's chunks of 1,000 rows —
 * in both dead-letter modes. The gate says "full" exactly when the model
 * counts at least `cap` entries that can run: pending, with no dead letter
 * (block-key) and no failed entry at or before it in its key. `baton
 * status` counts the keys with such a failure and the pending entries
 * waiting behind one.
 */

type Status = 'pending' | 'dead' | 'handled' | 'discarded';

interface Run {
  key: string;
  status: Status;
  /** Failed attempts (a pending entry with attempts > 0 waits for its retry). */
  attempts: number;
  count: number;
}

const run: fc.Arbitrary<Run> = fc.record({
  key: fc.constantFrom('', 'a', 'A', 'ab', 'b', 'é', '9', '10', 'z'),
  status: fc.constantFrom<Status>('pending', 'pending', 'pending', 'dead', 'handled', 'discarded'),
  attempts: fc.constantFrom(0, 0, 0, 1),
  count: fc.constantFrom(1, 2, 3, 17, 999, 1000, 1001),
});

/**
 * Per the definitions, entry by entry: entries that can run; keys with a
 * failure (a dead letter with block-key, or a failed pending entry); and
 * pending entries waiting behind one.
 */
function model(runs: readonly Run[], mode: DeadLetterMode) {
  const blocked = new Set<string>();
  let runnable = 0;
  let behind = 0;
  for (const r of runs) {
    for (let i = 0; i < r.count; i++) {
      const wasBlocked = blocked.has(r.key);
      const failed = r.status === 'pending' && r.attempts > 0;
      const dead = r.status === 'dead' && mode === 'block-key';
      if (failed || dead) blocked.add(r.key);
      if (r.status === 'pending' && !blocked.has(r.key)) runnable++;
      if (r.status === 'pending' && wasBlocked) behind++;
    }
  }
  return { runnable, blockedKeys: blocked.size, behind };
}

describe('fetch gate and status: only entries that can run count; the blocked ones are shown', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await freshDatabase('fetch_gate');
    await t.db.query(
      `INSERT INTO baton.subscriptions (name, source) VALUES ('g', 'p'), ('other', 'p')`,
    );
  });
  afterAll(async () => {
    await t?.drop();
  });

  async function seed(runs: readonly Run[]): Promise<void> {
    await t.db.query('TRUNCATE baton.inbox');
    // Another subscription's runnable entries must not count.
    await t.db.query(
      `INSERT INTO baton.inbox (subscription, position, event_id, type, key, status)
       SELECT 'other', g::text, gen_random_uuid(), 't', 'a', 'pending' FROM generate_series(1, 50) g`,
    );
    for (const r of runs) {
      await t.db.query(
        `INSERT INTO baton.inbox (subscription, position, event_id, type, key, status, attempts)
         SELECT 'g', g::text, gen_random_uuid(), 't', $1, $2, $3 FROM generate_series(1, $4) g`,
        [r.key, r.status, r.attempts, r.count],
      );
    }
  }

  it('is full exactly when the model counts at least cap entries that can run', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(run, { minLength: 0, maxLength: 12 }),
        fc.constantFrom<DeadLetterMode>('block-key', 'skip'),
        fc.integer({ min: 1, max: 4000 }),
        async (runs, mode, cap) => {
          await seed(runs);
          await t.db.query(`UPDATE baton.subscriptions SET on_dead_letter = $1`, [mode]);
          const gate = new FetchGate('"baton"', 'g', mode);
          const { runnable, blockedKeys, behind } = model(runs, mode);
          expect((await gate.read(t.db, cap)).full, `cap ${cap}, model ${runnable}`).toBe(
            runnable >= cap,
          );
          if (runnable > 0) {
            expect((await gate.read(t.db, runnable)).full, `cap = model ${runnable}`).toBe(true);
          }
          expect((await gate.read(t.db, runnable + 1)).full, `cap = model ${runnable} + 1`).toBe(
            false,
          );
          // The operator's view of the same inbox.
          const status = (await readStatus(t.db)).subscriptions.find((s) => s.name === 'g');
          expect(status).toMatchObject({ blockedKeys, blockedEntries: behind });
        },
      ),
      { numRuns: 40 },
    );
  }, 120_000);
});
