import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createBaton,
  type FeedHandler,
  httpFeedSource,
  type RunningServer,
  serveHttp,
} from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase, SECRET } from './helpers.ts';
import { CommitCrashDatabase, DroppingSource, RelayCrashDatabase } from './support/model-faults.ts';
import {
  MODEL_SLOTS,
  MODEL_TABLES_SQL,
  type ModelCommand,
  type ModelEnv,
  ModelRun,
  resetModel,
} from './support/model-world.ts';
import { closeClients, openClients } from './support/ordering-outbox.ts';

/*
 * A model test of producer → relay → HTTP feed → inbox → handler, driven one
 * step at a time with crashes at the dangerous points: the relay dying after
 * sequencing but before COMMIT, the consumer losing a fetched batch, the
 * ingest or the handler transaction dying before COMMIT (the first or the
 * second transaction of the step), handlers failing their first attempt, and
 * whole-process restarts. Publishers commit or roll back, some holding their
 * transaction open across other steps. After every step nothing may have
 * taken effect twice or out of key order; after quiescing, every committed
 * event has taken effect exactly once and nothing rolled back has.
 */

const key = fc.constantFrom('a', 'b', 'c');
const slot = fc.integer({ min: 0, max: MODEL_SLOTS - 1 });
/** Three commits for each rollback, and one event in four failing its first attempt. */
const commit = fc.integer({ min: 0, max: 3 }).map((n) => n > 0);
const failFirst = fc.integer({ min: 0, max: 3 }).map((n) => n === 0);

const command: fc.Arbitrary<ModelCommand> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('publish' as const),
      keys: fc.array(key, { minLength: 1, maxLength: 3 }),
      commit,
      failFirst,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('open' as const),
      slot,
      key,
      failFirst,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('close' as const), slot, commit }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('relay' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('relay-crash' as const) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('fetch' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('fetch-crash' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('ingest-crash' as const),
      at: fc.integer({ min: 0, max: 1 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant('handle' as const), careful: fc.boolean() }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('handle-crash' as const),
      careful: fc.boolean(),
      at: fc.integer({ min: 0, max: 1 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('restart' as const),
      relay: fc.boolean(),
      consumer: fc.boolean(),
    }),
  },
);

describe('relay + inbox model under crashes', () => {
  let producerDb: TestDatabase;
  let consumerDb: TestDatabase;
  let feed: FeedHandler;
  let server: RunningServer;
  let env: ModelEnv;

  beforeAll(async () => {
    producerDb = await freshDatabase('model_producer');
    consumerDb = await freshDatabase('model_consumer');
    await consumerDb.db.query(MODEL_TABLES_SQL);
    const relayDb = new RelayCrashDatabase(producerDb.db);
    const producer = createBaton({ db: relayDb, service: 'items' });
    feed = producer.feedHandler({ auth: { type: 'hmac', secrets: [SECRET] } });
    server = await serveHttp((req, signal) => feed.handle(req, signal));
    const faultyConsumerDb = new CommitCrashDatabase(consumerDb.db);
    env = {
      producerDb: relayDb,
      consumerDb: faultyConsumerDb,
      source: new DroppingSource(
        httpFeedSource({
          name: 'items',
          url: `${server.url}/baton`,
          auth: { type: 'hmac', secret: SECRET },
        }),
      ),
      producer,
      consumerBaton: createBaton({ db: faultyConsumerDb, service: 'model' }),
      slots: await openClients(producerDb.url, MODEL_SLOTS),
    };
  });
  afterAll(async () => {
    await closeClients(env?.slots ?? []);
    await server?.close();
    await feed?.close();
    await producerDb?.drop();
    await consumerDb?.drop();
  });

  it('every committed event takes effect exactly once, in key order; nothing rolled back does', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(command, { minLength: 1, maxLength: 80, size: 'max' }),
        async (commands) => {
          await resetModel(env);
          const run = new ModelRun(env);
          for (const [i, c] of commands.entries()) {
            await run.run(c);
            const problems = await run.invariantProblems();
            if (problems.length > 0) {
              throw new Error(`after step ${i} ${JSON.stringify(c)}:\n${problems.join('\n')}`);
            }
          }
          await run.quiesce();
          expect(await run.finalProblems()).toEqual([]);
        },
      ),
      // Bounds shrinking of a failure (each run is real database work); a
      // passing property finishes its 30 runs well within it.
      { numRuns: 30, interruptAfterTimeLimit: 90_000 },
    );
  }, 150_000);
});
