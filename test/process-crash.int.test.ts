import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/free-port.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { interleave, seededRandom, shuffledPlan, sleep } from './fixtures/chaos-plan.ts';
import {
  createLedgerTables,
  firstViolations,
  type LedgerReport,
  readLedger,
  settled,
} from './fixtures/delivery-ledger.ts';
import { FIXTURES, type FixtureProcess, ProcessGroup } from './fixtures/process-harness.ts';
import { eventually, freshDatabase, SECRET } from './helpers.ts';

/**
 * Real processes, real SIGKILLs: a producer, a relay (+ HTTP feed) and a
 * consumer, each its own Node process, killed at random moments and at the
 * protocol's most delicate points, then restarted. At the end every produced
 * event must have been applied exactly once, in per-key order.
 */
const TOTAL = 2000;
const KEYS = 40;
const SUBSCRIPTION = 'crash-test';

type Kill = 'relay' | 'consumer' | 'consumer-after-commit' | 'consumer-after-fetch' | 'producer';
// Kills that need events flowing (a producer to interrupt, handler commits or
// fetched events to crash at) and kills that do not. The plan alternates them,
// starting with the former, so those land while the producer is still busy.
const NEEDS_TRAFFIC = {
  producer: 2,
  'consumer-after-commit': 3,
  'consumer-after-fetch': 3,
} as const satisfies Partial<Record<Kill, number>>;
const ANY_TIME = { relay: 4, consumer: 3 } as const satisfies Partial<Record<Kill, number>>;
const PLANNED_KILLS = [...Object.values(NEEDS_TRAFFIC), ...Object.values(ANY_TIME)].reduce(
  (a, b) => a + b,
  0,
);

describe('SIGKILLed producer, relay and consumer processes', () => {
  let producerDb: TestDatabase;
  let consumerDb: TestDatabase;
  const group = new ProcessGroup();

  beforeAll(async () => {
    producerDb = await freshDatabase('crash_producer');
    consumerDb = await freshDatabase('crash_consumer');
    await createLedgerTables(producerDb.db, consumerDb.db);
  });
  afterEach(() => group.killAll());
  afterAll(async () => {
    await group.killAll();
    await producerDb?.drop();
    await consumerDb?.drop();
  });

  it('loses nothing and applies nothing twice across kills and restarts', async () => {
    const started = Date.now();
    const port = await freePort();
    const producer = group.add('producer', FIXTURES.producer, {
      url: producerDb.url,
      total: TOTAL,
      keys: KEYS,
      concurrency: 4,
      intervalMs: 60,
    });
    const relay = group.add('relay', FIXTURES.relay, {
      url: producerDb.url,
      port,
      secret: SECRET,
      pollIntervalMs: 100,
      batchSize: 100,
    });
    const consumer = group.add('consumer', FIXTURES.consumer, {
      url: consumerDb.url,
      feedUrls: [`http://127.0.0.1:${port}/baton`],
      secret: SECRET,
      subscription: SUBSCRIPTION,
      label: 'consumer',
      concurrency: 2,
      crashProbability: 0.5,
    });
    try {
      await Promise.all([relay.start(), consumer.start()]);
      await producer.start();

      const seed = Date.now() % 1_000_000;
      const kills = await runChaos({ producer, relay, consumer }, seed);
      console.log(
        `process-crash: seed ${seed}, kills ${JSON.stringify(kills)}, chaos took ${Date.now() - started} ms, producer ${producer.running ? 'still producing' : 'had finished'}`,
      );

      const producerExit = await producer.exited(120_000);
      expect(producerExit?.code, producer.describe()).toBe(0);
      let last: LedgerReport | undefined;
      await eventually(
        async () => {
          await sleep(250);
          last = await readLedger(producerDb.db, consumerDb.db, SUBSCRIPTION);
          assertAlive([relay, consumer]);
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
        `process-crash: ledger ${JSON.stringify(ledger)}, ${Date.now() - started} ms in all`,
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
      const total = Object.values(kills).reduce((a, b) => a + b, 0);
      expect(total).toBe(PLANNED_KILLS);
      expect(kills['consumer-after-commit'] + kills['consumer-after-fetch']).toBeGreaterThan(0);
    } finally {
      await group.killAll();
    }
  }, 240_000);
});

interface Actors {
  producer: FixtureProcess;
  relay: FixtureProcess;
  consumer: FixtureProcess;
}

/**
 * Runs the kill plan: each step waits a random moment, kills one process
 * (from outside, or by arming one of the consumer's own crash points and
 * waiting for it to die there) and starts it again. Returns kills per kind as
 * they really happened (an armed crash point that never fired within its
 * wait is replaced by an outside kill and counted as one).
 */
async function runChaos(actors: Actors, seed: number): Promise<Record<Kill, number>> {
  const random = seededRandom(seed);
  const done: Record<Kill, number> = {
    relay: 0,
    consumer: 0,
    'consumer-after-commit': 0,
    'consumer-after-fetch': 0,
    producer: 0,
  };
  // Bounded by count: every step ends (ready and crash-point waits have their own time limits).
  const plan = interleave<Kill>(
    shuffledPlan(NEEDS_TRAFFIC, random),
    shuffledPlan(ANY_TIME, random),
  );
  for (const step of plan) {
    await sleep(100 + random() * 700);
    assertAlive([actors.relay, actors.consumer]);
    const kind = await killOnce(actors, step);
    done[kind]++;
  }
  return done;
}

async function killOnce(actors: Actors, step: Kill): Promise<Kill> {
  const { producer, relay, consumer } = actors;
  switch (step) {
    case 'producer':
      // Once the producer has finished there is nothing left to interrupt there.
      if (!producer.running) return killOnce(actors, 'relay');
      await producer.kill();
      await producer.start();
      return 'producer';
    case 'relay':
      await relay.kill();
      await relay.start();
      return 'relay';
    case 'consumer':
      await consumer.kill();
      await consumer.start();
      return 'consumer';
    case 'consumer-after-commit':
    case 'consumer-after-fetch': {
      consumer.send(`arm ${step === 'consumer-after-commit' ? 'after-commit' : 'after-fetch'}`);
      const exit = await consumer.exited(15_000);
      if (exit && (exit.signal !== 'SIGKILL' || exit.killedByParent)) {
        throw new Error(
          `consumer ended unexpectedly: ${JSON.stringify(exit)}\n${consumer.describe()}`,
        );
      }
      const fired = exit !== undefined;
      if (!fired) await consumer.kill();
      await consumer.start();
      return fired ? step : 'consumer';
    }
  }
}

/** A process that should be up and is not has failed on its own: stop with its output. */
function assertAlive(processes: readonly FixtureProcess[]): void {
  for (const p of processes)
    if (!p.running) throw new Error(`${p.label} is not running\n${p.describe()}`);
}
