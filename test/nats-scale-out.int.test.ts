import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type NatsCluster, startNatsCluster } from '../examples/shop/nats-cluster.ts';
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
 * Many instances over NATS JetStream (issue 14, item 2), with real processes:
 * two relay processes publishing the producer's outbox to a 3-node cluster,
 * and consumer processes of one service (one database) sharing one
 * subscription. Under load: the working relay is SIGKILLed (the other takes
 * over), a NATS node is SIGKILLed and started again, one consumer leaves
 * (SIGKILL) and a new one joins. Every event handled exactly once in effect,
 * each key's versions in order, nothing missing.
 */
const TOTAL = 3000;
const KEYS = 20;
const SUBSCRIPTION = 'shared-subscription';

describe('NATS: two relays, consumers joining and leaving, a node killed', () => {
  let producerDb: TestDatabase;
  let consumerDb: TestDatabase;
  let cluster: NatsCluster;
  const group = new ProcessGroup();

  beforeAll(async () => {
    cluster = await startNatsCluster(3);
    producerDb = await freshDatabase('nats_scale_producer');
    consumerDb = await freshDatabase('nats_scale_consumer');
    await createLedgerTables(producerDb.db, consumerDb.db);
  }, 120_000);
  afterEach(() => group.killAll());
  afterAll(async () => {
    await group.killAll();
    await cluster?.stop();
    await producerDb?.drop();
    await consumerDb?.drop();
  });

  it('keeps per-key order and exactly-once effect through it all', async () => {
    const natsServers = cluster.servers;
    const relays = [0, 1].map(async (i) =>
      group.add(`relay-${i + 1}`, FIXTURES.relay, {
        url: producerDb.url,
        port: await freePort(),
        secret: SECRET,
        pollIntervalMs: 100,
        batchSize: 100,
        natsServers,
      }),
    );
    const [relay1, relay2] = await Promise.all(relays);
    const consumer = (label: string) =>
      group.add(label, FIXTURES.consumer, {
        url: consumerDb.url,
        feedUrls: [],
        natsServers,
        secret: SECRET,
        subscription: SUBSCRIPTION,
        label,
        concurrency: 2,
        crashProbability: 0,
      });
    const [a, b] = [consumer('consumer-a'), consumer('consumer-b')];
    const producer = group.add('producer', FIXTURES.producer, {
      url: producerDb.url,
      total: TOTAL,
      keys: KEYS,
      concurrency: 4,
      intervalMs: 15,
    });
    try {
      await relay1?.start();
      await relay2?.start();
      await Promise.all([a.start(), b.start()]);
      await producer.start();

      const produced = async () =>
        (await producerDb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM produced'))
          .rows[0]?.n ?? 0;
      await eventually(async () => (await produced()) >= TOTAL / 4, 'a quarter produced', 60_000);
      // The working relay dies (whichever holds the lock); the other takes over.
      await relay1?.kill();
      await cluster.kill(0);
      await eventually(async () => (await produced()) >= TOTAL / 2, 'half produced', 60_000);
      await cluster.start(0);
      // One consumer leaves, a new one joins.
      await a.kill();
      const c = consumer('consumer-c');
      await c.start();

      const producerExit = await producer.exited(120_000);
      expect(producerExit?.code, producer.describe()).toBe(0);
      let last: LedgerReport | undefined;
      await eventually(
        async () => {
          await sleep(250);
          last = await readLedger(producerDb.db, consumerDb.db, SUBSCRIPTION);
          for (const p of [relay2, b, c])
            if (!p?.running) throw new Error(`${p?.label} is not running\n${p?.describe()}`);
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
      console.log(`nats scale-out: ledger ${JSON.stringify(ledger)}`);
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
      // The work was shared between the instances.
      const byWhom = await consumerDb.db.query<{ handled_by: string; n: number }>(
        'SELECT handled_by, count(*)::int AS n FROM effects GROUP BY handled_by ORDER BY handled_by',
      );
      console.log(`nats scale-out: handled by ${JSON.stringify(byWhom.rows)}`);
      expect(byWhom.rows.length, 'more than one instance handled events').toBeGreaterThanOrEqual(2);
    } finally {
      await group.killAll();
    }
  }, 300_000);
});
