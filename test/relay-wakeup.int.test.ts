import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelsFor, createBaton } from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { eventually, freshDatabase } from './helpers.ts';

/*
 * Publishers NOTIFY the relay at most once per interval (PostgreSQL
 * serialises the commits of notifying transactions); the relay, once woken,
 * polls at a short interval for a while so the transactions that did not
 * notify are not left for the slow fallback poll.
 */
describe('waking the relay', () => {
  let database: TestDatabase;
  let listener: pg.Client;
  let notifications = 0;

  beforeAll(async () => {
    database = await freshDatabase('relay_wakeup');
    listener = new pg.Client({ connectionString: database.url });
    await listener.connect();
    listener.on('notification', () => notifications++);
    await listener.query(`LISTEN "${channelsFor('baton').outbox}"`);
  });
  afterAll(async () => {
    await listener?.end();
    await database?.drop();
  });

  const publishIn = (baton: ReturnType<typeof createBaton>, n: number, key: string) =>
    baton.db.transaction((tx) => baton.publish(tx, { type: 'thing.made', key, payload: { n } }));

  const unsequenced = async () => {
    const r = await database.db.query<{ n: string }>(
      'SELECT count(*) AS n FROM baton.outbox WHERE seq IS NULL',
    );
    return Number(r.rows[0]?.n);
  };

  async function settledNotifications(): Promise<number> {
    await new Promise((r) => setTimeout(r, 300));
    const seen = notifications;
    notifications = 0;
    return seen;
  }

  it('one NOTIFY per interval, however many transactions publish in it', async () => {
    await settledNotifications();
    const limited = createBaton({
      db: database.db,
      service: 'things',
      notifyMinIntervalMs: 60_000,
    });
    for (let i = 0; i < 30; i++) await publishIn(limited, i, `limited-${i % 3}`);
    expect(await settledNotifications()).toBe(1);

    const everyTime = createBaton({ db: database.db, service: 'things', notifyMinIntervalMs: 0 });
    for (let i = 0; i < 30; i++) await publishIn(everyTime, i, `every-${i % 3}`);
    expect(await settledNotifications()).toBe(30);

    const never = createBaton({ db: database.db, service: 'things', notifyOnPublish: false });
    for (let i = 0; i < 5; i++) await publishIn(never, i, 'never');
    expect(await settledNotifications()).toBe(0);
  });

  it('a woken relay finds the transactions that did not notify; an idle one waits for its poll', async () => {
    const publisher = createBaton({
      db: database.db,
      service: 'things',
      notifyMinIntervalMs: 60_000,
    });
    // The fallback poll is out of reach: only NOTIFY and the active window can move rows.
    const relay = publisher.relay({
      pollIntervalMs: 60_000,
      activePollIntervalMs: 5,
      activeForMs: 3_000,
    });
    await relay.start();
    try {
      await eventually(async () => (await unsequenced()) === 0, 'the first pass');
      await publishIn(publisher, 1, 'a'); // carries the NOTIFY
      await eventually(async () => (await unsequenced()) === 0, 'the notified event', 2_500);
      for (let i = 0; i < 5; i++) await publishIn(publisher, i, 'b'); // no NOTIFY: the limiter
      await eventually(
        async () => (await unsequenced()) === 0,
        'events published while active',
        2_500,
      );

      await new Promise((r) => setTimeout(r, 3_300)); // the active window closes
      await publishIn(publisher, 2, 'c'); // still no NOTIFY
      await new Promise((r) => setTimeout(r, 400));
      expect(await unsequenced()).toBe(1);
      relay.wake(); // what a NOTIFY (or the fallback poll) would do
      await eventually(async () => (await unsequenced()) === 0, 'the event after a wake', 2_500);
    } finally {
      await relay.stop();
    }
  });

  it('refuses a negative interval with a clear error', () => {
    expect(() =>
      createBaton({ db: database.db, service: 'things', notifyMinIntervalMs: -1 }),
    ).toThrow(/notifyMinIntervalMs must be a number of milliseconds ≥ 0/);
  });
});
