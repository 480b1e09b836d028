import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  LOYALTY_TABLES,
  type PointsRequest as PointsPayload,
  pointsReservation,
} from '../examples/shop/loyalty-points.ts';
import { authHeaders } from '../src/http/auth.ts';
import { InvalidInputError, participantClient, saga } from '../src/index.ts';
import { SECRET } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/**
 * Hostile and careless callers of a participant's endpoints, and bad saga
 * starts: each gets a 4xx (or a typed error) saying why, and nothing changes
 * — not the barrier, not the idempotency keys, not the business tables.
 */
describe('bad input to participants and to saga starts', () => {
  let loyalty: TestService;
  let orders: TestService;
  let base: string;

  beforeAll(async () => {
    loyalty = await startService('bad_loyalty');
    orders = await startService('bad_orders');
    await loyalty.database.db.query(LOYALTY_TABLES);
    await loyalty.database.db.query("INSERT INTO accounts VALUES ('ada', 100)");
    loyalty.baton.participant.reservation('points', {
      ...pointsReservation,
      schema: z.object({ customerId: z.string().min(1), points: z.number().int().positive() }),
    });
    loyalty.baton.participant.action('grant', {
      schema: z.object({ customerId: z.string(), points: z.number().int().positive() }),
      run: async (tx, body) => {
        await tx.query('UPDATE accounts SET balance = balance + $2 WHERE customer_id = $1', [
          body.customerId,
          body.points,
        ]);
        return { granted: body.points };
      },
    });
    base = `${loyalty.server.url}/baton`;
    orders.baton.sagas.define(
      saga(
        'checkout',
        async (ctx, input: { orderId: string; points: number }) => {
          await ctx.step('noop', async () => input.orderId);
        },
        { input: z.object({ orderId: z.string().min(1), points: z.number().int().positive() }) },
      ),
    );
  });
  afterAll(async () => {
    await orders?.stop();
    await loyalty?.stop();
  });

  /** Everything a bad call could have changed on the participant. */
  const participantState = async () => {
    const db = loyalty.database.db;
    const rows = async (sql: string) => (await db.query(sql)).rows;
    return {
      barrier: await rows('SELECT tx_id, branch, op, outcome FROM baton.barrier ORDER BY 1, 2, 3'),
      keys: await rows('SELECT key, action FROM baton.idempotency_keys ORDER BY 1'),
      accounts: await rows('SELECT * FROM accounts ORDER BY 1'),
      holds: await rows('SELECT * FROM holds ORDER BY 1, 2'),
      movements: await rows('SELECT * FROM movements ORDER BY 1'),
    };
  };

  async function post(
    path: string,
    body: string,
    options: { sign?: boolean; headers?: Record<string, string>; tamper?: string } = {},
  ): Promise<{ status: number; code: string | undefined; message: string }> {
    const url = new URL(`${base}/${path}`);
    const signed =
      options.sign === false
        ? {}
        : authHeaders(
            { type: 'hmac', secret: SECRET },
            {
              method: 'POST',
              target: url.pathname + url.search,
              body,
              idempotencyKey: options.headers?.['idempotency-key'],
            },
          );
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...signed, ...options.headers },
      body: options.tamper ?? body,
    });
    const text = await response.text();
    let parsed: { error?: { code?: string; message?: string } } = {};
    try {
      parsed = JSON.parse(text);
    } catch {}
    return {
      status: response.status,
      code: parsed.error?.code,
      message: parsed.error?.message ?? text,
    };
  }

  const tryBody = (payload: unknown = { customerId: 'ada', points: 10 }) =>
    JSON.stringify({ txId: 'saga-x', branch: 'spend', payload });

  it('participant calls: unauthenticated, tampered, malformed, incomplete, unknown, off-schema', async () => {
    const before = await participantState();
    const cases: {
      what: string;
      call: () => ReturnType<typeof post>;
      status: number;
      reason: RegExp;
    }[] = [
      {
        what: 'no signature',
        call: () => post('reservations/points/try', tryBody(), { sign: false }),
        status: 401,
        reason: /.+/,
      },
      {
        what: 'signed with another secret',
        call: async () => {
          const body = tryBody();
          const headers = authHeaders(
            { type: 'hmac', secret: 'not-the-secret-0123456789' },
            { method: 'POST', target: '/baton/reservations/points/try', body },
          );
          return post('reservations/points/try', body, { sign: false, headers });
        },
        status: 401,
        reason: /.+/,
      },
      {
        what: 'body changed after signing (more points)',
        call: () =>
          post('reservations/points/try', tryBody(), {
            tamper: tryBody({ customerId: 'ada', points: 99 }),
          }),
        status: 401,
        reason: /.+/,
      },
      {
        what: 'action body changed after signing',
        call: () =>
          post('actions/grant', JSON.stringify({ customerId: 'ada', points: 1 }), {
            headers: { 'idempotency-key': 'k-tamper' },
            tamper: JSON.stringify({ customerId: 'ada', points: 1000 }),
          }),
        status: 401,
        reason: /.+/,
      },
      {
        what: 'malformed JSON',
        call: () => post('reservations/points/try', '{"txId": "saga-x", '),
        status: 400,
        reason: /JSON/,
      },
      {
        what: 'a JSON array instead of an object',
        call: () => post('reservations/points/try', '[1,2]'),
        status: 400,
        reason: /txId/,
      },
      {
        what: 'missing txId',
        call: () => post('reservations/points/try', JSON.stringify({ branch: 'b', payload: {} })),
        status: 400,
        reason: /txId/,
      },
      {
        what: 'missing branch',
        call: () => post('reservations/points/cancel', JSON.stringify({ txId: 't', payload: {} })),
        status: 400,
        reason: /branch/,
      },
      {
        what: 'txId with characters outside the alphabet',
        call: () =>
          post(
            'reservations/points/try',
            JSON.stringify({ txId: "x'; DROP TABLE holds;--", branch: 'b', payload: {} }),
          ),
        status: 400,
        reason: /txId/,
      },
      {
        what: 'unknown resource',
        call: () => post('reservations/diamonds/try', tryBody()),
        status: 404,
        reason: /no reservation resource "diamonds".*points/,
      },
      {
        what: 'unknown operation',
        call: () => post('reservations/points/steal', tryBody()),
        status: 404,
        reason: /.+/,
      },
      {
        what: 'payload failing the reservation schema (negative points)',
        call: () => post('reservations/points/try', tryBody({ customerId: 'ada', points: -50 })),
        status: 400,
        reason: /points/,
      },
      {
        what: 'payload failing the reservation schema (missing customer)',
        call: () => post('reservations/points/cancel', tryBody({ points: 5 })),
        status: 400,
        reason: /customerId/,
      },
      {
        what: 'unknown action',
        call: () =>
          post('actions/launder', '{}', { headers: { 'idempotency-key': 'k-unknown-action' } }),
        status: 404,
        reason: /no action "launder".*grant/,
      },
      {
        what: 'action without an idempotency key',
        call: () => post('actions/grant', JSON.stringify({ customerId: 'ada', points: 1 })),
        status: 400,
        reason: /Idempotency-Key/,
      },
      {
        what: 'action with a malformed idempotency key',
        call: () =>
          post('actions/grant', JSON.stringify({ customerId: 'ada', points: 1 }), {
            headers: { 'idempotency-key': 'bad key with spaces' },
          }),
        status: 400,
        reason: /Idempotency-Key/,
      },
      {
        what: 'action body failing its schema',
        call: () =>
          post('actions/grant', JSON.stringify({ customerId: 'ada', points: 'lots' }), {
            headers: { 'idempotency-key': 'k-schema' },
          }),
        status: 400,
        reason: /points/,
      },
      {
        what: 'action body that is not JSON',
        call: () => post('actions/grant', 'grant me', { headers: { 'idempotency-key': 'k-json' } }),
        status: 400,
        reason: /JSON/,
      },
      {
        what: 'confirm of a reservation that was never tried',
        call: () => post('reservations/points/confirm', tryBody()),
        status: 409,
        reason: /nothing was reserved/,
      },
      {
        what: 'try refused by the business (not enough points)',
        call: () => post('reservations/points/try', tryBody({ customerId: 'ada', points: 1000 })),
        status: 422,
        reason: /ada has 100 points available, 1000 asked/,
      },
      {
        what: 'try for a customer with no account',
        call: () => post('reservations/points/try', tryBody({ customerId: 'nobody', points: 1 })),
        status: 422,
        reason: /nobody/,
      },
    ];
    for (const c of cases) {
      const answer = await c.call();
      expect(answer.status, `${c.what}: ${answer.message}`).toBe(c.status);
      expect(answer.message, c.what).toMatch(c.reason);
      expect(await participantState(), `${c.what} changed nothing`).toEqual(before);
    }
  });

  it('a repeated confirm without a try is refused again, and does not block the real try', async () => {
    const call = { txId: 'saga-confirm-first', branch: 'spend' };
    const payload = { customerId: 'ada', points: 5 };
    const p = loyalty.baton.participant;
    expect((await p.reserve('points', 'confirm', call, payload)).status).toBe(409);
    expect((await p.reserve('points', 'confirm', call, payload)).status).toBe(409);
    // the try that follows still reserves, and the confirm after it takes effect
    expect((await p.reserve('points', 'try', call, payload)).status).toBe(200);
    expect((await p.reserve('points', 'confirm', call, payload)).status).toBe(200);
    const balance = await loyalty.database.db.query('SELECT balance FROM accounts');
    expect(balance.rows).toEqual([{ balance: 95 }]);
    expect((await loyalty.database.db.query('SELECT * FROM holds')).rows).toEqual([]);
  });

  it('a confirm arriving after its cancel is refused and takes nothing', async () => {
    const call = { txId: 'saga-confirm-late', branch: 'spend' };
    const payload = { customerId: 'ada', points: 20 };
    const p = loyalty.baton.participant;
    const db = loyalty.database.db;
    const balance = async () => (await db.query('SELECT balance FROM accounts')).rows;
    const before = await balance();
    expect((await p.reserve('points', 'try', call, payload)).status).toBe(200);
    expect((await p.reserve('points', 'cancel', call, payload)).status).toBe(200);
    const late = await p.reserve('points', 'confirm', call, payload);
    expect(late.status).toBe(409);
    expect(JSON.parse(late.body).error).toMatchObject({
      code: 'BATON_CANCELLED',
      message: expect.stringMatching(/was cancelled/),
    });
    expect(await balance()).toEqual(before);
    expect((await db.query('SELECT * FROM holds')).rows).toEqual([]);
    expect(
      (await db.query('SELECT * FROM movements WHERE reference = $1', [`spend:${call.txId}`])).rows,
    ).toEqual([]);
    const barrier = await db.query(
      'SELECT op, outcome FROM baton.barrier WHERE tx_id = $1 ORDER BY op',
      [call.txId],
    );
    expect(barrier.rows).toEqual([
      { op: 'cancel', outcome: 'done' },
      { op: 'try', outcome: 'done' },
    ]);
  });

  it('the client reports refusals as terminal errors naming the reason', async () => {
    const client = participantClient({
      name: 'loyalty',
      url: base,
      auth: { type: 'hmac', secret: 'wrong-secret-0123456789abcdef' },
    });
    await expect(
      client.reserve('try', 'points', {
        txId: 'saga-y',
        branch: 'spend',
        payload: { customerId: 'ada', points: 1 } satisfies PointsPayload,
      }),
    ).rejects.toMatchObject({ code: 'BATON_TERMINAL', message: /refused.*401/ });
    expect(() =>
      participantClient({ name: 'x', url: 'not a url', auth: { type: 'bearer', token: 't' } }),
    ).toThrow(InvalidInputError);
  });

  const sagaRows = async () =>
    (await orders.database.db.query('SELECT id FROM baton.sagas ORDER BY 1')).rows;

  it('saga starts: off-schema input, unknown name, bad id and key are typed errors and start nothing', async () => {
    const before = await sagaRows();
    const sagas = orders.baton.sagas;
    const bad: [string, () => Promise<unknown>, RegExp][] = [
      [
        'input failing the schema',
        () => sagas.start('checkout', { orderId: 'o1', points: -3 }),
        /input of saga "checkout" is invalid.*points/s,
      ],
      [
        'input missing a field',
        () => sagas.start('checkout', { points: 3 }),
        /input of saga "checkout" is invalid.*orderId/s,
      ],
      ['input of the wrong type', () => sagas.start('checkout', 'o1'), /invalid/],
      [
        'unknown saga',
        () => sagas.start('refund', { orderId: 'o1', points: 1 }),
        /no saga named "refund".*checkout/,
      ],
      [
        'id with bad characters',
        () => sagas.start('checkout', { orderId: 'o1', points: 1 }, { id: 'a b' }),
        /saga id/,
      ],
      [
        'empty id',
        () => sagas.start('checkout', { orderId: 'o1', points: 1 }, { id: '' }),
        /saga id/,
      ],
      [
        'id too long',
        () => sagas.start('checkout', { orderId: 'o1', points: 1 }, { id: 'x'.repeat(201) }),
        /saga id/,
      ],
      [
        'empty key',
        () => sagas.start('checkout', { orderId: 'o1', points: 1 }, { key: '' }),
        /saga key/,
      ],
      [
        'key that is not a string',
        () =>
          sagas.start(
            'checkout',
            { orderId: 'o1', points: 1 },
            {
              key: 42 as unknown as string,
            },
          ),
        /saga key/,
      ],
      [
        'key too long',
        () => sagas.start('checkout', { orderId: 'o1', points: 1 }, { key: 'k'.repeat(501) }),
        /saga key/,
      ],
    ];
    for (const [what, start, reason] of bad) {
      const error = await start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, what).toBeInstanceOf(InvalidInputError);
      expect((error as Error).message, what).toMatch(reason);
    }
    expect(await sagaRows()).toEqual(before);
    expect((await orders.database.db.query('SELECT * FROM baton.saga_keys')).rows).toEqual([]);
    // status of an unknown saga is a typed not-found, not a crash
    await expect(sagas.status('no-such-saga')).rejects.toMatchObject({ message: /no saga/ });
  });

  it('saga definitions with bad names are refused when defined', () => {
    expect(() => saga('', async () => {})).toThrow(InvalidInputError);
    expect(() => saga('has space', async () => {})).toThrow(/saga name/);
    expect(() => saga('ok', 'not a function' as never)).toThrow(/saga function/);
    expect(() => orders.baton.sagas.define(saga('checkout', async () => {}))).toThrow(
      /defined twice/,
    );
  });
});
