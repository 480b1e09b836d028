import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBaton, type FeedHandler, type RunningServer, serveHttp } from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { databaseWith, freshDatabase } from './helpers.ts';

const TOKEN = 'feed-listen-token-0123456789';

/*
 * A long-poll waits for the relay's NOTIFY. When LISTEN fails — the database
 * restarting, as CI's chaos run caught — the feed must answer as usual (the
 * wait is bounded anyway), try LISTEN again on the next long-poll, and never
 * leave an unhandled rejection behind: that ended the service process.
 * (Vitest fails the run on an unhandled rejection.)
 */
describe('feed long-poll when LISTEN fails', () => {
  let database: TestDatabase;
  let feed: FeedHandler;
  let server: RunningServer;
  let listenCalls = 0;
  let failListen = true;

  beforeAll(async () => {
    database = await freshDatabase('feed_listen_failure');
    const real = database.db;
    const flaky = databaseWith(real, {
      listen: async (channel, onNotify) => {
        listenCalls++;
        if (failListen) throw new Error('Connection terminated unexpectedly');
        return real.listen(channel, onNotify);
      },
    });
    const baton = createBaton({ db: flaky, service: 'things' });
    feed = baton.feedHandler({ auth: { type: 'bearer', tokens: [TOKEN] } });
    server = await serveHttp((req, signal) => feed.handle(req, signal));
  });
  afterAll(async () => {
    await server?.close();
    await feed?.close();
    await database?.drop();
  });

  const longPoll = async () => {
    const response = await fetch(`${server.url}/baton/events?after=0&wait=300`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    return { status: response.status, body: await response.text() };
  };

  it('answers the long-poll, retries LISTEN next time, and recovers when LISTEN works again', async () => {
    expect(await longPoll()).toEqual({ status: 200, body: '{"next":"0","count":0}' });
    expect(listenCalls).toBe(1);
    expect((await longPoll()).status).toBe(200);
    expect(listenCalls).toBe(2); // tried again, not stuck on the failed attempt

    failListen = false;
    expect((await longPoll()).status).toBe(200);
    expect(listenCalls).toBe(3);
    expect((await longPoll()).status).toBe(200);
    expect(listenCalls).toBe(3); // listening now: no new LISTEN per request
  });
});
