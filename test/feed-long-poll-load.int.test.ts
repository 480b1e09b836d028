import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBaton, type FeedHandler, type RunningServer, serveHttp } from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { databaseWith, freshDatabase } from './helpers.ts';

const TOKEN = 'feed-load-token-0123456789';

/*
 * Long-polls that wait cost the producer's database nothing per waiter
 * (security review, issue 12, item 7): 2,000 waiting long-polls made ~2,000
 * reads a second, each waiter re-reading every second, with no cap. Now the
 * feed's head is read once per wake-up for all waiters, and past a cap a
 * request that would wait is answered 503 with Retry-After.
 */
describe('many waiting long-polls', () => {
  let database: TestDatabase;
  let feed: FeedHandler;
  let server: RunningServer;
  let reads = 0;

  beforeAll(async () => {
    database = await freshDatabase('feed_long_poll_load');
    const real = database.db;
    const counted = databaseWith(real, {
      query: (text, values) => {
        reads++;
        return real.query(text, values);
      },
    });
    const baton = createBaton({ db: counted, service: 'things' });
    await real.query('SELECT 1'); // migrated by freshDatabase
    feed = baton.feedHandler({ auth: { type: 'bearer', tokens: [TOKEN] }, maxWaiters: 60 });
    server = await serveHttp((req, signal) => feed.handle(req, signal));
  });
  afterAll(async () => {
    await server?.close();
    await feed?.close();
    await database?.drop();
  });

  const longPoll = async (wait: number) => {
    const response = await fetch(`${server.url}/baton/events?after=0&wait=${wait}`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    return { status: response.status, body: await response.text(), headers: response.headers };
  };

  it('reads the database once per wake-up for all waiters, not once per waiter', async () => {
    const waiters = 50;
    const polls = Array.from({ length: waiters }, () => longPoll(3_000));
    await new Promise((resolve) => setTimeout(resolve, 500)); // all of them waiting
    const before = reads;
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const during = reads - before;
    const answers = await Promise.all(polls);
    expect(answers.every((a) => a.status === 200)).toBe(true);
    // Two seconds of waiting: a shared read a second (and a NOTIFY's), not 50 per second.
    expect(during).toBeLessThanOrEqual(6);
  });

  it('answers 503 with Retry-After past the cap, and serves again when waiters are gone', async () => {
    const held = Array.from({ length: 60 }, () => longPoll(2_000));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const refused = await longPoll(2_000);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(JSON.parse(refused.body).error.code).toBe('BATON_BUSY');
    // A request that does not wait is still served at once.
    expect((await longPoll(0)).status).toBe(200);
    await Promise.all(held);
    expect((await longPoll(100)).status).toBe(200);
  });
});
