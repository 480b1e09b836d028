import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { routeApi } from '../examples/shop/http-api.ts';
import { LOYALTY_TABLES, refundPoints, spendHold } from '../examples/shop/loyalty-points.ts';
import { TerminalError } from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/**
 * The shop's own code, attacked as a peer with valid credentials or a
 * careless client would (security review, items 14): a confirm that names
 * another customer, refunds that are negative, too large, for another
 * customer or repeated, and paths and values that used to answer 500 with
 * the exception's text.
 */

let t: TestDatabase;
const balance = async (id: string) =>
  (
    await t.db.query<{ balance: number }>('SELECT balance FROM accounts WHERE customer_id = $1', [
      id,
    ])
  ).rows[0]?.balance;

beforeAll(async () => {
  t = await freshDatabase('shop_hardening');
  await t.db.query(LOYALTY_TABLES);
  await t.db.query(`INSERT INTO accounts VALUES ('ada', 100), ('eve', 100)`);
  // ada holds 30 points for order o-1 (the place saga's try)
  await t.db.query(`INSERT INTO holds VALUES ('place:o-1', 'spend-points', 'ada', 30)`);
});
afterAll(async () => {
  await t?.drop();
});

describe('loyalty: the hold and the spend decide, not the caller', () => {
  it('a confirm naming another customer debits the customer who held the points', async () => {
    await t.db.transaction((tx) =>
      spendHold(
        tx,
        { customerId: 'eve', points: 99 },
        { txId: 'place:o-1', branch: 'spend-points' },
      ),
    );
    expect(await balance('ada')).toBe(70);
    expect(await balance('eve')).toBe(100);
  });

  it('refunds at most what the order spent, to whom spent it, once', async () => {
    const refund = (p: object) => t.db.transaction((tx) => refundPoints(tx, p as never));
    for (const bad of [
      { orderId: 'o-1', customerId: 'ada', points: -500 },
      { orderId: 'o-1', customerId: 'ada', points: 0 },
      { orderId: 'o-1', customerId: 'ada', points: 1.5 },
      { orderId: 'o-1', customerId: 'ada', points: 31 },
      { orderId: 'o-1', customerId: 'eve', points: 30 },
      { orderId: "o'; --", customerId: 'ada', points: 1 },
      { customerId: 'ada', points: 1 },
    ])
      await expect(refund(bad), JSON.stringify(bad)).rejects.toThrow(TerminalError);
    expect(await refund({ orderId: 'o-9', customerId: 'ada', points: 5 })).toEqual({ refunded: 0 });
    expect(await refund({ orderId: 'o-1', customerId: 'ada', points: 30 })).toEqual({
      refunded: 30,
    });
    expect(await refund({ orderId: 'o-1', customerId: 'ada', points: 30 })).toEqual({
      refunded: 0,
    });
    expect(await balance('ada')).toBe(100);
    expect(await balance('eve')).toBe(100);
  });
});

describe("the shop's HTTP API tells a client what it did wrong, and nothing of its insides", () => {
  const logged: unknown[] = [];
  const routes = [
    {
      method: 'GET',
      pattern: /^\/things\/([^/]+)$/,
      handle: async ({ params }: { params: string[] }) => {
        if (params[0] === 'boom') throw new Error('secret internals: password=hunter2');
        await t.db.query('SELECT $1::int', [params[0]]); // "x" is SQLSTATE 22P02
        return { status: 200, headers: {}, body: '{}' };
      },
    },
  ];
  const get = (url: string) =>
    routeApi(routes, { method: 'GET', url, headers: {}, body: undefined } as never, (e) =>
      logged.push(e),
    );

  it('a malformed percent-encoding is a 400', async () => {
    expect((await get('/things/%E0%A4%A')).status).toBe(400);
  });
  it('a value the database refuses for its type is a 400', async () => {
    expect((await get('/things/x')).status).toBe(400);
  });
  it('any other error is a 500 without its text, which goes to the log', async () => {
    const answer = await get('/things/boom');
    expect(answer.status).toBe(500);
    expect(String(answer.body)).not.toMatch(/hunter2|internals/);
    expect(String(logged.at(-1))).toMatch(/hunter2/);
  });
});
