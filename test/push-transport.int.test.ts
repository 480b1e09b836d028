import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBaton, type SequencedEvent, type Transport } from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/**
 * The relay with a push transport (what NATS JetStream will be): events go
 * out in feed order; a send that fails leaves nothing recorded, so the next
 * pass sends them again (the transport deduplicates by event id); once sent,
 * they are recorded as dispatched and never sent again.
 */
describe('relay with a push transport', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await freshDatabase('push_transport');
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('sends in seq order, re-sends after a failed send, never twice after success', async () => {
    const sent: SequencedEvent[][] = [];
    let failNext = true;
    const transport: Transport = {
      name: 'recording',
      async send(events) {
        if (failNext) {
          failNext = false;
          throw new Error('broker unavailable');
        }
        sent.push([...events]);
      },
    };
    const baton = createBaton({ db: database.db, service: 'producer', notifyOnPublish: false });
    const relay = baton.relay({ transport, batchSize: 100 });
    await database.db.transaction((tx) =>
      baton.publish(tx, [
        { type: 'thing.made', key: 'a', payload: { n: 1 } },
        { type: 'thing.made', key: 'b', payload: { n: 2 } },
        { type: 'thing.made', key: 'a', payload: { n: 3 } },
      ]),
    );

    await expect(relay.runOnce()).rejects.toThrow('broker unavailable');
    const afterFailure = await database.db.query(
      'SELECT count(*)::int AS n FROM baton.outbox WHERE seq IS NOT NULL',
    );
    expect(afterFailure.rows[0]?.n, 'a failed send records nothing').toBe(0);

    expect(await relay.runOnce()).toBe(3);
    expect(sent.flat().map((e) => [e.seq, e.key, e.version])).toEqual([
      [1, 'a', 1],
      [2, 'b', 1],
      [3, 'a', 2],
    ]);
    const state = await database.db.query<{ dispatched_through: string }>(
      'SELECT dispatched_through FROM baton.relay_state',
    );
    expect(state.rows[0]?.dispatched_through).toBe('3');

    expect(await relay.runOnce()).toBe(0);
    expect(sent.flat()).toHaveLength(3);
  });
});
