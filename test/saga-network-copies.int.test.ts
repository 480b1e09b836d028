import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LOYALTY_TABLES,
  type PointsRequest as PointsPayload,
  pointsReservation,
} from '../examples/shop/loyalty-points.ts';
import { participantClient, saga, TerminalError } from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import { type SagaProxy, startSagaProxy } from './fixtures/saga-proxy.ts';
import { SECRET } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/*
 * A network that duplicates a request can deliver the copy first: the copy
 * runs, and the original — same signature, same nonce — is refused as a
 * replay. That refusal says "a copy of this got here", not "it will not be
 * done": the outcome is unknown, so the call must be retried (its idempotency
 * key or barrier makes that safe), never taken as refused. Taken as refused,
 * a saga compensated a refund that had been booked (the chaos `network`
 * scenario found it: an order placed again, its points refunded).
 */
describe('a request whose network copy arrives first', () => {
  let orders: TestService;
  let loyalty: TestService;
  let worker: SagaWorker;
  let proxy: SagaProxy;

  beforeAll(async () => {
    orders = await startService('copies_orders');
    loyalty = await startService('copies_loyalty');
    await loyalty.database.db.query(LOYALTY_TABLES);
    await loyalty.database.db.query(
      "INSERT INTO accounts VALUES ('ada', 100); CREATE TABLE grants (key text PRIMARY KEY, points int NOT NULL)",
    );
    loyalty.baton.participant.reservation('points', pointsReservation);
    loyalty.baton.participant.action('grant', {
      run: async (tx, body: { points: number }, { idempotencyKey }) => {
        await tx.query('INSERT INTO grants VALUES ($1, $2)', [idempotencyKey, body.points]);
        return { granted: body.points };
      },
    });
    // Every other request to a path is delivered twice, the copy first.
    proxy = await startSagaProxy(loyalty.server.url, ({ nth }) =>
      nth % 2 === 1 ? 'copy-first' : 'pass',
    );
    const client = participantClient({
      name: 'loyalty',
      url: `${proxy.url}/baton`,
      auth: { type: 'hmac', secret: SECRET },
    });
    orders.baton.sagas.define(
      saga('grant-and-spend', async (ctx, input: PointsPayload) => {
        const grant = await ctx.call(
          'grant',
          (key) => client.call<{ granted: number }>('grant', { points: 5 }, key),
          { retry: { attempts: 3, backoff: { baseMs: 20, maxMs: 50 } } },
        );
        await ctx.reserve('spend-points', client, 'points', input, {
          retry: { attempts: 3, backoff: { baseMs: 20, maxMs: 50 } },
        });
        return grant;
      }),
    );
    worker = orders.baton.sagas.worker({ pollIntervalMs: 25 });
    worker.start();
  });
  afterAll(async () => {
    await worker?.stop();
    await proxy?.close();
    await orders?.stop();
    await loyalty?.stop();
  });

  it('the client reports an unknown outcome (retryable), not a refusal', async () => {
    const direct = participantClient({
      name: 'loyalty',
      url: `${proxy.url}/baton`,
      auth: { type: 'hmac', secret: SECRET },
    });
    const first = direct.call('grant', { points: 1 }, 'direct-1');
    await expect(first).rejects.not.toBeInstanceOf(TerminalError);
    await expect(first).rejects.toMatchObject({ retryable: true });
    // The repeat (a fresh nonce, the same key) gets the copy's result.
    expect(await direct.call('grant', { points: 1 }, 'direct-1')).toEqual({ granted: 1 });
    const booked = await loyalty.database.db.query("SELECT * FROM grants WHERE key = 'direct-1'");
    expect(booked.rowCount).toBe(1);
  });

  it('a saga whose action and try were each delivered twice completes, each effect once', async () => {
    const { id } = await orders.baton.sagas.start('grant-and-spend', {
      customerId: 'ada',
      points: 40,
    });
    const status = await orders.baton.sagas.waitFor(id, 20_000);
    expect(status.error ?? null).toBeNull();
    expect(status.state).toBe('completed');
    expect(status.output).toEqual({ granted: 5 });
    const db = loyalty.database.db;
    expect(
      (await db.query('SELECT points FROM grants WHERE key <> $1', ['direct-1'])).rows,
    ).toEqual([{ points: 5 }]);
    expect((await db.query('SELECT balance FROM accounts')).rows).toEqual([{ balance: 60 }]);
    // Both copies were delivered: the copy ran, the original was refused as a replay.
    const copied = proxy.calls.filter((c) => c.rule === 'copy-first');
    expect(copied.length).toBeGreaterThanOrEqual(2);
    for (const c of copied) expect([c.copyStatus, c.status]).toEqual([200, 401]);
  });
});
