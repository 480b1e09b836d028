import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/free-port.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { sleep } from './fixtures/chaos-plan.ts';
import {
  createLedgerTables,
  firstViolations,
  type LedgerReport,
  readLedger,
  settled,
} from './fixtures/delivery-ledger.ts';
import { FIXTURES, ProcessGroup } from './fixtures/process-harness.ts';
import { eventually, freshDatabase, SECRET } from './helpers.ts';

/**
 * Scale-out with real processes: two relay processes on the producer's
 * database (each running the relay loop and serving the feed on its own
 * port) and two consumer processes on the consumer's database sharing one
 * subscription. One relay is SIGKILLed while the producer is mid-way; the
 * other must take over the sequencing, and the consumer reading from the dead
 * one must fail over to the live feed. Per-key order and exactly-once effect
 * must hold throughout.
 */
const TOTAL = 3000;
const KEYS = 20;
const SUBSCRIPTION = 'shared-subscription';

describe('two relays and two consumers on the same databases', () => {
  let producerDb: TestDatabase;
  let consumerDb: TestDatabase;
  const group = new ProcessGroup();

  beforeAll(async () => {
    producerDb = await freshDatabase('multi_producer');
    consumerDb = await freshDatabase('multi_consumer');
    await createLedgerTables(producerDb.db, consumerDb.db);
  });
  afterEach(() => group.killAll());
  afterAll(async () => {
    await group.killAll();
    await producerDb?.drop();
    await consumerDb?.drop();
  });

  it('keeps per-key order and exactly-once effect when one relay dies', async () => {
    const started = Date.now();
    const ports = [await freePort(), await freePort()] as const;
    const feedUrls = ports.map((port) => `http://127.0.0.1:${port}/baton`);
    const relays = ports.map((port, i) =>
      group.add(`relay-${i + 1}`, FIXTURES.relay, {
        url: producerDb.url,
        port,
        secret: SECRET,
        pollIntervalMs: 100,
        batchSize: 100,
      }),
    );
    // Each consumer prefers a different feed and fails over to the other.
    const consumers = ['consumer-a', 'consumer-b'].map((label, i) =>
      group.add(label, FIXTURES.consumer, {
        url: consumerDb.url,
        feedUrls: i === 0 ? feedUrls : [...feedUrls].reverse(),
        secret: SECRET,
        subscription: SUBSCRIPTION,
        label,
        concurrency: 2,
        crashProbability: 0,
      }),
    );
    const producer = group.add('producer', FIXTURES.producer, {
      url: producerDb.url,
      total: TOTAL,
      keys: KEYS,
      concurrency: 4,
      intervalMs: 15,
    });
    const [relay1, relay2] = relays as [(typeof relays)[0], (typeof relays)[0]];
    try {
      await Promise.all([...relays, ...consumers].map((p) => p.start()));
      await producer.start();

      await eventually(
        async () => (await producedCount(producerDb)) >= TOTAL / 3,
        `a third of the events produced\n${producer.describe()}`,
        60_000,
      );
      const killedAt = await lastSeq(producerDb);
      const exit = await relay1.kill();
      console.log(`multi-process: killed relay-1 at feed position ${killedAt}`);
      expect(exit?.signal).toBe('SIGKILL');

      const producerExit = await producer.exited(120_000);
      expect(producerExit?.code, producer.describe()).toBe(0);
      let last: LedgerReport | undefined;
      await eventually(
        async () => {
          await sleep(250);
          last = await readLedger(producerDb.db, consumerDb.db, SUBSCRIPTION);
          for (const p of [relay2, ...consumers])
            if (!p.running) throw new Error(`${p.label} is not running\n${p.describe()}`);
          return settled(last);
        },
        'every produced event handled',
        120_000,
      ).catch(async (error) => {
        throw new Error(
          `${error}\nledger: ${JSON.stringify(last)}\n${await firstViolations(consumerDb.db)}\n${group.describe()}`,
        );
      });

      const ledger = await readLedger(producerDb.db, consumerDb.db, SUBSCRIPTION);
      console.log(
        `multi-process: ledger ${JSON.stringify(ledger)}, ${Date.now() - started} ms in all`,
      );
      expect(ledger).toMatchObject({
        produced: TOTAL,
        outboxWithoutRow: 0,
        rowWithoutOutbox: 0,
        seqGaps: 0,
        effects: TOTAL,
        missing: 0,
        phantom: 0,
        duplicated: 0,
        violations: 0,
        keysBehind: 0,
        open: 0,
      });
      // Everything after the kill was sequenced by the surviving relay.
      expect(await lastSeq(producerDb)).toBe(TOTAL);
      expect(killedAt).toBeLessThan(TOTAL);
    } finally {
      await group.killAll();
    }
  }, 240_000);
});

async function producedCount(db: TestDatabase): Promise<number> {
  const r = await db.db.query<{ n: number }>('SELECT count(*)::int AS n FROM produced');
  return r.rows[0]?.n ?? 0;
}

async function lastSeq(db: TestDatabase): Promise<number> {
  const r = await db.db.query<{ last: string }>(
    'SELECT last_seq::text AS last FROM baton.relay_state',
  );
  return Number(r.rows[0]?.last ?? 0);
}
