import pg from 'pg';
import { pointsReservation } from '../../examples/shop/loyalty-points.ts';
import type { Database } from '../../src/db/executor.ts';
import { type RunningServer, serveHttp } from '../../src/http/node-server.ts';
import { createBaton, participantClient, saga } from '../../src/index.ts';
import type { ReservationClient } from '../../src/sagas/participant-client.ts';
import type { SagaWorker } from '../../src/sagas/saga-worker.ts';
import type { BenchClusters } from './clusters.ts';
import {
  CUSTOMERS,
  checkConsistency,
  insertOrder,
  LOYALTY_TABLES,
  ORDERS_TABLE,
  type Points,
  seedAccountsSql,
} from './saga-loyalty.ts';
import { closedLoop, latencySummary, type Window } from './saga-measure.ts';
import { Profile, profiledClient, profiledDatabase } from './saga-profile.ts';
import { round, sleep } from './stats.ts';

export const SECRET = 'bench-secret-0123456789abcdef';

export interface BatonPassOptions {
  label: string;
  inFlight: number;
  workers: number;
  loopsPerWorker: number;
  pollIntervalMs: number;
  /** Orchestrator pool size (shared by the workers of this process). */
  poolSize: number;
  warmupMs: number;
  measureMs: number;
  /** Time statements, transactions and HTTP calls (slower; for the profile only). */
  profile?: boolean;
}

export interface BatonPassResult {
  label: string;
  config: Omit<BatonPassOptions, 'label'>;
  sagasPerSec: number;
  completed: number;
  /** start → completed, from the saga's own timestamps (database clock). */
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  cpu: Window['cpu'];
  consistency: Awaited<ReturnType<typeof checkConsistency>>;
  notCompleted: number;
  profile?: ProfileReport;
}

export interface ProfileReport {
  perSaga: { statements: number; transactions: number; claims: number; emptyClaims: number };
  statements: {
    kind: string;
    count: number;
    perSaga: number;
    meanMs: number;
    emptyShare: number;
  }[];
  transactionsMeanMs: number;
  http: { kind: string; count: number; meanMs: number }[];
}

let passNo = 0;

/**
 * One Baton pass: an orders service (orchestrator, producer cluster) runs the
 * `place-order` saga — local step, points reservation on the loyalty service
 * (consumer cluster) over HMAC-signed HTTP through the barrier, confirm —
 * with `inFlight` sagas always in flight.
 */
export async function runBatonPass(
  clusters: BenchClusters,
  o: BatonPassOptions,
): Promise<BatonPassResult> {
  const n = ++passNo;
  const ordersDb = await clusters.database(clusters.producer, `saga_orders_${n}`, o.poolSize);
  const loyaltyDb = await clusters.database(clusters.consumer, `saga_loyalty_${n}`, 20);
  const profile = o.profile ? new Profile() : undefined;
  const db: Database = profile ? profiledDatabase(profile, ordersDb.db) : ordersDb.db;

  const orders = createBaton({ db, service: 'orders' });
  const loyalty = createBaton({ db: loyaltyDb.db, service: 'loyalty' });
  await orders.migrate();
  await loyalty.migrate();
  await ordersDb.db.query(ORDERS_TABLE);
  await loyaltyDb.db.query(LOYALTY_TABLES);
  await loyaltyDb.db.query(seedAccountsSql());
  loyalty.participant.reservation('points', pointsReservation);
  const handler = loyalty.httpHandler({ auth: { type: 'hmac', secrets: [SECRET] } });
  const server: RunningServer = await serveHttp((req, signal) => handler.handle(req, signal));
  let client: ReservationClient = participantClient({
    name: 'loyalty',
    url: `${server.url}/baton`,
    auth: { type: 'hmac', secret: SECRET },
  });
  if (profile) client = profiledClient(profile, client);

  const placeOrder = saga<{ orderId: string; customerId: string; points: number }, string>(
    'place-order',
    async (ctx, input) => {
      await ctx.step('create-order', (tx) => insertOrder(tx, { id: input.orderId, ...input }), {
        compensate: async (tx) =>
          void (await tx.query(`UPDATE orders SET state = 'cancelled' WHERE id = $1`, [
            input.orderId,
          ])),
      });
      await ctx.reserve('spend-points', client, 'points', {
        customerId: input.customerId,
        points: input.points,
      } satisfies Points);
      return input.orderId;
    },
  );
  orders.sagas.define(placeOrder);
  const workers: SagaWorker[] = Array.from({ length: o.workers }, (_, i) =>
    orders.sagas.worker({
      concurrency: o.loopsPerWorker,
      pollIntervalMs: o.pollIntervalMs,
      id: `w${i}`,
    }),
  );
  for (const w of workers) w.start();

  // Completion watcher on its own connection: one query for all sagas in flight, every 10 ms.
  const watcher = new pg.Client({
    connectionString: ordersDb.url,
    application_name: 'bench-watch',
  });
  await watcher.connect();
  const waiting = new Map<string, () => void>();
  let watching = true;
  const watch = (async () => {
    while (watching) {
      const ids = [...waiting.keys()];
      if (ids.length > 0) {
        const r = await watcher.query<{ id: string }>(
          `SELECT id FROM baton.sagas WHERE id = ANY($1) AND state IN ('completed', 'compensated', 'stuck')`,
          [ids],
        );
        for (const { id } of r.rows) {
          waiting.get(id)?.();
          waiting.delete(id);
        }
      }
      // 10 ms: the watcher is the load driver's cost, not Baton's, and it shares the
      // machine's two cores with both; at 2 ms it sent ~500 queries/s (more than a third
      // of the orchestrator's own statements). Latency comes from the saga rows, unaffected.
      await sleep(10);
    }
  })();

  let k = 0;
  try {
    const window = await closedLoop({
      inFlight: o.inFlight,
      warmupMs: o.warmupMs,
      measureMs: o.measureMs,
      prefix: `p${n}`,
      unit: async (id) => {
        const done = new Promise<void>((resolve) => waiting.set(id, resolve));
        k++;
        await orders.sagas.start(
          'place-order',
          { orderId: id, customerId: `c${(k % CUSTOMERS) + 1}`, points: 1 + (k % 7) },
          { id },
        );
        await done;
      },
    });
    const latency = await ordersDb.db.query<{ ms: number }>(
      `SELECT (extract(epoch FROM finished_at - created_at) * 1000)::float8 AS ms
       FROM baton.sagas WHERE id = ANY($1)`,
      [window.ids],
    );
    const states = await ordersDb.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM baton.sagas WHERE state <> 'completed'`,
    );
    const lat = latencySummary(latency.rows.map((r) => r.ms));
    const { label, ...config } = o;
    return {
      label,
      config,
      sagasPerSec: window.perSec,
      completed: window.completed,
      ...lat,
      cpu: window.cpu,
      consistency: await checkConsistency(ordersDb.db, loyaltyDb.db),
      notCompleted: Number(states.rows[0]?.n),
      ...(profile ? { profile: report(profile, window.completed) } : {}),
    };
  } finally {
    watching = false;
    await watch.catch(() => {});
    await watcher.end().catch(() => {});
    await Promise.all(workers.map((w) => w.stop()));
    await handler.close();
    await server.close();
  }
}

function report(profile: Profile, completedInWindow: number): ProfileReport {
  // Counted over the whole pass (warm-up, window and drain): divide by all sagas.
  const sagas = profile.statements.get('start (INSERT sagas)')?.count ?? completedInWindow;
  const statements = [...profile.statements.entries()]
    .filter(([kind]) => kind !== 'BEGIN' && kind !== 'COMMIT')
    .map(([kind, t]) => ({
      kind,
      count: t.count,
      perSaga: round(t.count / sagas, 2),
      meanMs: round(t.ms / t.count, 2),
      emptyShare: round(t.empty / t.count, 2),
    }))
    .sort((a, b) => b.perSaga * b.meanMs - a.perSaga * a.meanMs);
  const claims = profile.statements.get('claim (UPDATE … lease, SKIP LOCKED)');
  return {
    perSaga: {
      statements: round(statements.reduce((s, x) => s + x.count, 0) / sagas, 1),
      transactions: round(profile.transactions.count / sagas, 1),
      claims: round((claims?.count ?? 0) / sagas, 1),
      emptyClaims: round((claims?.empty ?? 0) / sagas, 1),
    },
    statements,
    transactionsMeanMs: round(profile.transactions.ms / Math.max(1, profile.transactions.count), 2),
    http: [...profile.http.entries()].map(([kind, t]) => ({
      kind,
      count: t.count,
      meanMs: round(t.ms / t.count, 2),
    })),
  };
}
