import pg from 'pg';
import type { RunningShop, ServiceName } from '../launcher.ts';
import { request } from '../shop-client.ts';

export interface QuiescenceReport {
  /** The shop drained within the deadline (a miss is a liveness failure). */
  drained: boolean;
  drainMs: number;
  /** What was still moving when the deadline passed. */
  stillMoving: string[];
  /**
   * Caretaker passes until one repaired nothing (a fixed point), and what each repaired;
   * `skipped`: the service answered that another run holds its caretaker lease (nothing was
   * checked), -1: no report (the run failed).
   */
  caretakerPasses: { service: string; repaired: number; differences: number; skipped?: true }[];
  fixedPoint: boolean;
}

async function scalar(url: string, sql: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return Number((await client.query<{ n: string }>(sql)).rows[0]?.n ?? 0);
  } finally {
    await client.end().catch(() => {});
  }
}

/** What is still in motion in the shop (empty when it is at rest). */
export async function moving(shop: RunningShop): Promise<string[]> {
  const db = shop.databaseUrls;
  const found: string[] = [];
  const probe = async (what: string, url: string, sql: string) => {
    const n = await scalar(url, sql).catch(() => -1);
    if (n !== 0) found.push(`${what}: ${n < 0 ? 'database unreachable' : n}`);
  };
  for (const service of ['customers', 'orders', 'loyalty'] as ServiceName[]) {
    await probe(
      `${service} unrelayed events`,
      db[service],
      'SELECT count(*) AS n FROM baton.outbox WHERE seq IS NULL',
    );
    await probe(
      `${service} inbox pending`,
      db[service],
      "SELECT count(*) AS n FROM baton.inbox WHERE status = 'pending'",
    );
  }
  await probe(
    'orders sagas not terminal',
    db.orders,
    "SELECT count(*) AS n FROM baton.sagas WHERE state IN ('running', 'completing', 'compensating')",
  );
  // Consumers caught up with their producers' feeds.
  const last = await scalar(db.customers, 'SELECT last_seq AS n FROM baton.relay_state').catch(
    () => -1,
  );
  for (const referrer of ['orders', 'loyalty'] as const) {
    await probe(
      `${referrer} behind customers' feed`,
      db[referrer],
      `SELECT (${last} - coalesce(max(split_part(cursor, '@', -1)::bigint), 0)) AS n FROM baton.subscriptions WHERE source = 'customers'`,
    );
  }
  return found;
}

/** How long quiescence waits for a caretaker that answers skipped (another run holds its lease). */
const LEASE_WAIT_MS = 60_000;

/**
 * Brings the shop to rest after the faults are healed: waits for every
 * outbox relayed, every inbox handled, every saga terminal and every
 * consumer caught up — within `deadlineMs` (a miss is a liveness failure) —
 * then runs the caretaker (repair, approve) on both referrers until a pass
 * repairs nothing (at most 4 passes). A pass in which a referrer answered
 * skipped (another run holds its lease) checked nothing there: it is tried
 * again, for up to a minute, and is never taken for a fixed point.
 */
export async function quiesce(shop: RunningShop, deadlineMs: number): Promise<QuiescenceReport> {
  const started = Date.now();
  let still: string[] = [];
  for (;;) {
    still = await moving(shop);
    if (still.length === 0 || Date.now() - started > deadlineMs) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const report: QuiescenceReport = {
    drained: still.length === 0,
    drainMs: Date.now() - started,
    stillMoving: still,
    caretakerPasses: [],
    fixedPoint: false,
  };
  const leaseDeadline = Date.now() + LEASE_WAIT_MS;
  for (let pass = 0; pass < 4 && !report.fixedPoint; ) {
    const passes = [await caretakerPass(shop, 'orders'), await caretakerPass(shop, 'loyalty')];
    report.caretakerPasses.push(...passes);
    const skipped = passes.some((p) => p.skipped);
    if (skipped && Date.now() > leaseDeadline) break;
    if (!skipped) pass++;
    report.fixedPoint = passes.every((p) => !p.skipped && p.repaired === 0 && p.differences === 0);
    // Repairs publish nothing that others consume, but give in-flight handlers a moment.
    if (!report.fixedPoint)
      await new Promise((resolve) => setTimeout(resolve, skipped ? 1_000 : 500));
  }
  return report;
}

/** One caretaker run (repair, approve) at a referrer; -1 when it gave no report. */
async function caretakerPass(
  shop: RunningShop,
  service: 'orders' | 'loyalty',
): Promise<QuiescenceReport['caretakerPasses'][number]> {
  const r = await request<{
    totals?: { repaired: number; differences: number };
    skipped?: boolean;
  }>(
    shop.urls[service],
    'POST',
    '/admin/reconcile',
    { repair: true, approve: true },
    { authorization: `Bearer ${shop.adminToken}` },
    120_000,
  ).catch(() => undefined);
  const totals = r?.body.totals;
  return {
    service,
    repaired: totals?.repaired ?? -1,
    differences: totals?.differences ?? -1,
    ...(r?.body.skipped === true ? { skipped: true as const } : {}),
  };
}
