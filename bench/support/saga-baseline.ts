import { errorResponse, jsonResponse } from '../../src/http/http-types.ts';
import { serveHttp } from '../../src/http/node-server.ts';
import type { BenchClusters } from './clusters.ts';
import {
  CUSTOMERS,
  checkConsistency,
  holdPoints,
  insertOrder,
  LOYALTY_TABLES,
  ORDERS_TABLE,
  type Points,
  seedAccountsSql,
  spendHold,
} from './saga-loyalty.ts';
import { closedLoop, latencySummary, type Window } from './saga-measure.ts';

export interface BaselineResult {
  label: string;
  http: boolean;
  ordersPerSec: number;
  completed: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  cpu: Window['cpu'];
  consistency: Awaited<ReturnType<typeof checkConsistency>>;
}

let passNo = 0;

/**
 * The same business writes as the saga, as plain transactions without Baton:
 * the order row (one autocommit insert in the orders database); the hold
 * (one transaction in the loyalty database, with the same availability check
 * under the account's row lock); then the confirm (one transaction: hold
 * deleted, balance lowered, movement written). With `http`, the two loyalty
 * transactions run behind the same `node:http` server over loopback, as JSON
 * POSTs from `fetch` (what the saga's participant client uses), unsigned and
 * with no barrier; without, the orders process calls the loyalty database
 * directly. `inFlight` orders run at once, back to back.
 */
export async function runBaseline(
  clusters: BenchClusters,
  o: { inFlight: number; warmupMs: number; measureMs: number; http: boolean },
): Promise<BaselineResult> {
  const n = ++passNo;
  const ordersDb = await clusters.database(clusters.producer, `plain_orders_${n}`, 20);
  const loyaltyDb = await clusters.database(clusters.consumer, `plain_loyalty_${n}`, 20);
  await ordersDb.db.query(ORDERS_TABLE);
  await loyaltyDb.db.query(LOYALTY_TABLES);
  await loyaltyDb.db.query(seedAccountsSql());

  const tryHold = (body: Points & { txId: string }) =>
    loyaltyDb.db.transaction((tx) =>
      holdPoints(tx, body, { txId: body.txId, branch: 'spend-points' }),
    );
  const confirm = (body: Points & { txId: string }) =>
    loyaltyDb.db.transaction((tx) =>
      spendHold(tx, body, { txId: body.txId, branch: 'spend-points' }),
    );

  const server = o.http
    ? await serveHttp(async (req) => {
        const body = JSON.parse(req.body?.toString('utf8') ?? 'null') as Points & { txId: string };
        try {
          if (req.url === '/points/try') return jsonResponse(200, { result: await tryHold(body) });
          if (req.url === '/points/confirm')
            return jsonResponse(200, { result: await confirm(body) });
          return errorResponse(404, 'NOT_FOUND', req.url);
        } catch (error) {
          return errorResponse(409, 'REFUSED', (error as Error).message);
        }
      })
    : undefined;
  const post = async (path: string, body: unknown) => {
    const response = await fetch(`${server?.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const answer = (await response.json()) as { result?: unknown };
    if (response.status !== 200) throw new Error(`${path}: ${JSON.stringify(answer)}`);
    return answer.result;
  };

  let k = 0;
  try {
    const window = await closedLoop({
      inFlight: o.inFlight,
      warmupMs: o.warmupMs,
      measureMs: o.measureMs,
      prefix: `b${n}`,
      unit: async (id) => {
        k++;
        const call = { txId: id, customerId: `c${(k % CUSTOMERS) + 1}`, points: 1 + (k % 7) };
        await insertOrder(ordersDb.db, { id, customerId: call.customerId, points: call.points });
        if (server) {
          await post('/points/try', call);
          await post('/points/confirm', call);
        } else {
          await tryHold(call);
          await confirm(call);
        }
      },
    });
    return {
      label: o.http ? 'plain transactions, HTTP between services' : 'plain transactions, no HTTP',
      http: o.http,
      ordersPerSec: window.perSec,
      completed: window.completed,
      ...latencySummary(window.latenciesMs),
      cpu: window.cpu,
      consistency: await checkConsistency(ordersDb.db, loyaltyDb.db),
    };
  } finally {
    await server?.close();
  }
}
