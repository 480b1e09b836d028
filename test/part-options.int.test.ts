import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Baton, createBaton, httpFeedSource, InvalidInputError } from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase, SECRET } from './helpers.ts';

/*
 * Every part compiles its options once, in one idiom (core/options.ts): a
 * key given as `undefined` takes its default, a bad value is refused with
 * the part and option named, and the part never sees anything else.
 */

let database: TestDatabase;
let baton: Baton;

beforeAll(async () => {
  database = await freshDatabase('options');
  baton = createBaton({ db: database.db, service: 'shop' });
  await baton.migrate();
});
afterAll(async () => {
  await database?.drop();
});

describe('options of the parts', () => {
  it('relay({ batchSize: undefined }) numbers the default batch (1,000), not every row (LIMIT NULL)', async () => {
    const events = Array.from({ length: 1_001 }, (_, i) => ({
      type: 't',
      key: `k${i}`,
      payload: {},
    }));
    await database.db.transaction((tx) => baton.publish(tx, events));
    expect(await baton.relay({ batchSize: undefined }).runOnce()).toBe(1_000);
    expect(await baton.relay({ batchSize: undefined }).runOnce()).toBe(1);
  });

  it.each([
    ['relay', () => baton.relay({ batchSize: 0 }), /relay: batchSize must be an integer/],
    [
      'relay',
      () => baton.relay({ pollIntervalMs: -1 }),
      /relay: pollIntervalMs must be a number of milliseconds/,
    ],
    [
      'consumer',
      () => baton.consumer({ name: 'c1', source: feed(), maxAttempts: 0 }),
      /consumer c1: maxAttempts must be an integer/,
    ],
    [
      'consumer',
      () => baton.consumer({ name: 'c2', source: feed(), onDeadLetter: 'drop' as 'skip' }),
      /consumer c2: onDeadLetter must be one of 'block-key', 'skip'/,
    ],
    [
      'feed source',
      () =>
        httpFeedSource({
          name: 'x',
          url: 'http://127.0.0.1:1/baton',
          auth: { type: 'hmac', secret: SECRET },
          maxEventBytes: -5,
        }),
      /feed source x: maxEventBytes must be an integer/,
    ],
    [
      'saga worker',
      () => baton.sagas.worker({ concurrency: 0 }),
      /saga worker: concurrency must be an integer/,
    ],
  ])('%s: a bad value is refused, naming the part and the option', (_part, make, message) => {
    expect(make).toThrow(InvalidInputError);
    expect(make).toThrow(message);
  });

  it('a consumer and a saga worker take defaults for keys given as undefined', () => {
    expect(() =>
      baton.consumer({ name: 'c3', source: feed(), maxAttempts: undefined, batchSize: undefined }),
    ).not.toThrow();
    expect(() => baton.sagas.worker({ concurrency: undefined })).not.toThrow();
  });
});

function feed() {
  return httpFeedSource({
    name: 'shop',
    url: 'http://127.0.0.1:1/baton',
    auth: { type: 'hmac', secret: SECRET },
  });
}
