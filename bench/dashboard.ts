/**
 * `npm run bench -- dashboard [--quick] [--json] [--rows N]`
 *
 * The operator dashboard (`createDashboard`) on a large service: 100,000
 * sagas and 100,000 dead letters (`--rows`), among 3× as many handled inbox
 * entries, loaded with `INSERT … SELECT generate_series` into Baton's own
 * tables (sealed as Baton seals them) on one durable embedded PostgreSQL.
 * Each page is rendered by calling the handler in-process (no HTTP server)
 * with an operator's session cookie, and timed against the plain SQL a
 * hand-written admin page would run for the same rows, in the same run
 * (alternating, one of each per repetition). See bench/README.md,
 * "dashboard".
 *
 * Measured: handler answer time per page (p50/p99) — session check, every
 * statement the page runs, HTML rendering. Not measured: HTTP, the
 * browser, concurrent operators, pages while workers write.
 */
import { createBaton, createDashboard } from '../src/index.ts';
import { listDeadLetters } from '../src/messaging/dead-letters.ts';
import { readSubscriptions } from '../src/messaging/subscription-status.ts';
import { PgDatabase, startEmbeddedPostgres } from '../src/pg.ts';
import { listSagas } from '../src/sagas/saga-admin.ts';
import { readSagasStatus } from '../src/sagas/status.ts';
import type { BenchFlags } from './support/args.ts';
import { machine } from './support/clusters.ts';
import { heading, say, table } from './support/report.ts';
import { percentile, round, wallMs } from './support/stats.ts';

const DEFAULT_ROWS = 100_000;
const HANDLED_PER_DEAD = 3;
const PAGE_SIZE = 50;
const DEEP_PAGES = 20;
const TOKEN = 'bench-operator-token-0123456789';
const SUBSCRIPTIONS = ['billing-orders', 'shipping-orders'] as const;
const SLOW_P50_MS = 50;
/** --quick: a page stops after this much of its own time (once it has MIN_REPETITIONS). */
const QUICK_PAGE_BUDGET_MS = 10_000;
const MIN_REPETITIONS = 10;

/**
 * The state of saga number g (of `rows`, numbered oldest first): every 20th
 * stuck (waiting for an operator, old or new), 10 % of the newest tenth
 * running (older ones have settled), 15 % compensated, the rest completed.
 * `loadSagas` writes the same rule in SQL.
 */
type SagaStateName = 'stuck' | 'running' | 'compensated' | 'completed';
function sagaState(g: number, rows: number): SagaStateName {
  const r = g % 20;
  if (r === 0) return 'stuck';
  if ((r === 1 || r === 2) && g > Math.floor((rows * 9) / 10)) return 'running';
  if (r >= 3 && r <= 5) return 'compensated';
  return 'completed';
}

interface Page {
  label: string;
  url: string;
  /** Table rows (`<tbody><tr>`) the answer must hold. */
  rows: number;
  /** Further text the answer must hold (a count, an id). */
  contains: string[];
  /** Read while following the next-page links (needs no warm-up). */
  readAlready?: boolean;
  /** The hand-written SQL for the same rows (list pages only). */
  baseline?: { text: string; values: unknown[] };
}

interface Figures {
  label: string;
  url: string;
  p50: number;
  p99: number;
  /** Repetitions timed. */
  n: number;
  bytes: number;
  baselineP50?: number;
  baselineP99?: number;
  ratio?: number;
}

interface PlanLine {
  query: string;
  top: string;
  scans: string[];
  seqScan: boolean;
}

export async function run(flags: BenchFlags): Promise<void> {
  const started = wallMs();
  const rows = flags.rows ?? DEFAULT_ROWS;
  const handled = rows * HANDLED_PER_DEAD;
  const repetitions = flags.quick ? 30 : 200;
  if (rows < 2 * (DEEP_PAGES + 1) * PAGE_SIZE)
    throw new Error(
      `--rows must be at least ${2 * (DEEP_PAGES + 1) * PAGE_SIZE} (page ${DEEP_PAGES + 1} of one subscription's dead letters)`,
    );
  heading(`baton dashboard benchmark (${flags.quick ? 'quick' : 'full'})`);
  const host = machine();
  say(
    `machine: ${host.cpus} × ${host.cpuModel}, ${host.memoryGb} GiB, ${host.kernel}, node ${host.node}, load ${host.loadAverage1m}`,
  );
  const cluster = await startEmbeddedPostgres();
  const url = await cluster.createDatabase('dashboard_bench');
  const db = new PgDatabase({ connectionString: url, max: 4, applicationName: 'bench-dashboard' });
  let dashboard: ReturnType<typeof createDashboard> | undefined;
  try {
    const settings = await readSettings(db);
    if (settings.fsync !== 'on' || settings.synchronous_commit !== 'on')
      throw new Error(`the benchmark cluster must be durable; got ${JSON.stringify(settings)}`);
    say(
      `postgres ${settings.server_version}: fsync=${settings.fsync}, synchronous_commit=${settings.synchronous_commit}, shared_buffers=${settings.shared_buffers}, work_mem=${settings.work_mem}, random_page_cost=${settings.random_page_cost}; one cluster`,
    );
    say(
      `data: ${rows} sagas, ${rows} dead letters over ${SUBSCRIPTIONS.length} subscriptions among ${handled} handled inbox entries; ${repetitions} repetitions per page`,
    );

    const baton = createBaton({ db, service: 'bench' });
    await baton.migrate();
    const loadStarted = wallMs();
    await Promise.all([loadSagas(db, rows), loadInbox(db, rows, handled)]);
    // A table that got this many rows would have been vacuumed by autovacuum
    // by the time an operator looks: visibility map set, statistics fresh.
    const insertSeconds = (wallMs() - loadStarted) / 1000;
    await Promise.all([
      db.query('VACUUM (ANALYZE) baton.sagas, baton.saga_steps, baton.subscriptions'),
      db.query('VACUUM (ANALYZE) baton.inbox'),
    ]);
    const loadSeconds = (wallMs() - loadStarted) / 1000;
    const expected = await checkCounts(db, rows, handled);
    say(
      `loaded in ${round(loadSeconds, 1)} s (inserts ${round(insertSeconds, 1)} s, then VACUUM ANALYZE); counts checked against the tables`,
    );

    dashboard = createDashboard({
      db,
      service: 'bench',
      operators: { tokens: [TOKEN] },
      sampleEveryMs: 3_600_000,
    });
    const handler = dashboard;
    const login = await handler.handle({
      method: 'POST',
      url: '/dashboard/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded', host: 'x' },
      body: Buffer.from(`token=${TOKEN}`),
    });
    const cookie = login.headers['set-cookie']?.split(';')[0];
    if (login.status !== 303 || !cookie?.startsWith('baton_dashboard_'))
      throw new Error(`login failed: ${login.status} ${JSON.stringify(login.headers)}`);
    const get = (pageUrl: string) =>
      handler.handle({ method: 'GET', url: pageUrl, headers: { cookie, host: 'x' } });

    // The deep pages: follow "next page" 20 times, as an operator would.
    const deepSagas = await follow(get, '/dashboard/sagas', DEEP_PAGES);
    const deepDead = await follow(get, '/dashboard/dead-letters', DEEP_PAGES);
    const offset = DEEP_PAGES * PAGE_SIZE;
    const sagaAt = await db.query<{ id: string; created_at: Date }>(
      `SELECT id, created_at FROM baton.sagas ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1`,
      [offset - 1],
    );
    const deadAt = await db.query<{ id: string; next: string }>(
      `SELECT id::text, (SELECT id::text FROM baton.inbox WHERE status = 'dead' ORDER BY inbox.id OFFSET $1 LIMIT 1) AS next
         FROM baton.inbox WHERE status = 'dead' ORDER BY inbox.id OFFSET $2 LIMIT 1`,
      [offset, offset - 1],
    );
    const lastSaga = sagaAt.rows[0];
    const lastDead = deadAt.rows[0];
    if (!lastSaga || !lastDead) throw new Error('fewer rows than 21 pages: use a larger --rows');
    if (deepSagas !== `/dashboard/sagas?before=${encodeURIComponent(lastSaga.id)}`)
      throw new Error(
        `page ${DEEP_PAGES + 1} of sagas: followed to ${deepSagas}, expected before=${lastSaga.id}`,
      );
    if (deepDead !== `/dashboard/dead-letters?after=${lastDead.id}`)
      throw new Error(
        `page ${DEEP_PAGES + 1} of dead letters: followed to ${deepDead}, expected after=${lastDead.id}`,
      );
    const firstDeepSaga = await db.query<{ id: string }>(
      `SELECT id FROM baton.sagas ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1`,
      [offset],
    );

    const stuckSaga = await db.query<{ id: string }>(
      `SELECT id FROM baton.sagas WHERE id = 'saga-' || lpad($1::text, 7, '0')`,
      [detailSagaNumber(rows)],
    );
    const detailSagaId = stuckSaga.rows[0]?.id;
    const detailDead = await db.query<{ id: string }>(
      `SELECT id::text FROM baton.inbox WHERE status = 'dead' ORDER BY inbox.id OFFSET $1 LIMIT 1`,
      [Math.floor(rows / 2)],
    );
    const detailDeadId = detailDead.rows[0]?.id;
    if (!detailSagaId || !detailDeadId) throw new Error('detail rows not found');
    const one = SUBSCRIPTIONS[0];
    const sagaCols = 'SELECT * FROM baton.sagas';
    const deadCols = "SELECT * FROM baton.inbox WHERE status = 'dead'";
    const pages: Page[] = [
      {
        label: 'overview',
        url: '/dashboard/',
        rows: SUBSCRIPTIONS.length,
        contains: [
          `/dashboard/dead-letters">${expected.dead}</a>`,
          `/dashboard/sagas?state=stuck">${expected.states.stuck}</a>`,
        ],
      },
      {
        label: 'sagas, first page',
        url: '/dashboard/sagas',
        readAlready: true,
        rows: PAGE_SIZE,
        contains: [`${PAGE_SIZE} shown of ${expected.sagas}`],
        baseline: {
          text: `${sagaCols} ORDER BY created_at DESC, id DESC LIMIT 50`,
          values: [],
        },
      },
      {
        label: 'sagas, state=stuck',
        url: '/dashboard/sagas?state=stuck',
        rows: PAGE_SIZE,
        contains: [`${PAGE_SIZE} shown of ${expected.states.stuck}`],
        baseline: {
          text: `${sagaCols} WHERE state = 'stuck' ORDER BY created_at DESC, id DESC LIMIT 50`,
          values: [],
        },
      },
      {
        label: `sagas, page ${DEEP_PAGES + 1}`,
        url: deepSagas,
        rows: PAGE_SIZE,
        contains: [
          `${PAGE_SIZE} shown of ${expected.sagas}`,
          `>${firstDeepSaga.rows[0]?.id ?? '?'}</a>`,
        ],
        baseline: {
          text: `${sagaCols} WHERE (created_at, id) < ($1, $2) ORDER BY created_at DESC, id DESC LIMIT 50`,
          values: [lastSaga.created_at, lastSaga.id],
        },
      },
      {
        label: 'dead letters, first page',
        url: '/dashboard/dead-letters',
        readAlready: true,
        rows: PAGE_SIZE,
        contains: [`${PAGE_SIZE} shown of ${expected.dead}`],
        baseline: {
          text: `${deadCols} ORDER BY id LIMIT 50`,
          values: [],
        },
      },
      {
        label: `dead letters, ${one}`,
        url: `/dashboard/dead-letters?subscription=${one}`,
        rows: PAGE_SIZE,
        contains: [`${PAGE_SIZE} shown of ${expected.deadBySubscription[one]}`],
        baseline: {
          text: `${deadCols} AND subscription = $1 ORDER BY id LIMIT 50`,
          values: [one],
        },
      },
      {
        label: `dead letters, page ${DEEP_PAGES + 1}`,
        url: deepDead,
        rows: PAGE_SIZE,
        contains: [`${PAGE_SIZE} shown of ${expected.dead}`, `>${lastDead.next}</a>`],
        baseline: {
          text: `${deadCols} AND id > $1 ORDER BY id LIMIT 50`,
          values: [lastDead.id],
        },
      },
      {
        label: 'saga detail (stuck, 3 steps)',
        url: `/dashboard/sagas/${detailSagaId}`,
        rows: 9,
        contains: [`Saga ${detailSagaId}`, 'step <b>reserve-stock</b>', 'Retry (compensations)'],
      },
      {
        label: 'dead-letter detail',
        url: `/dashboard/dead-letters/${detailDeadId}`,
        rows: 13,
        contains: [`Inbox entry ${detailDeadId}`, 'state-dead', 'order.placed'],
      },
    ];

    const plans = await explainListQueries(db, lastSaga.id, lastDead.id, one);
    const parts: [string, () => Promise<unknown>][] = [
      ['listSagas, first page (page + total)', () => listSagas(db, { limit: PAGE_SIZE })],
      [
        `listSagas, page ${DEEP_PAGES + 1}`,
        () => listSagas(db, { limit: PAGE_SIZE, before: lastSaga.id }),
      ],
      [
        'listDeadLetters, first page (page + total)',
        () => listDeadLetters(db, { limit: PAGE_SIZE }),
      ],
      ['readSubscriptions (dead-letter pages, overview)', () => readSubscriptions(db, '"baton"')],
      ['readSagasStatus (overview)', () => readSagasStatus(db, '"baton"')],
    ];

    heading('pages: handler answer time, ms (baseline: the plain SQL for the same rows)');
    const figures: Figures[] = [];
    for (const page of pages)
      figures.push(
        await measure(page, get, db, repetitions, flags.quick ? QUICK_PAGE_BUDGET_MS : Infinity),
      );
    table([
      ['page', 'n', 'p50', 'p99', 'KiB', 'baseline p50', 'p99', 'dashboard ÷ baseline (p50)'],
      ...figures.map((f) => [
        f.label,
        f.n,
        round(f.p50, 1),
        round(f.p99, 1),
        round(f.bytes / 1024, 1),
        f.baselineP50 === undefined ? '' : round(f.baselineP50, 2),
        f.baselineP99 === undefined ? '' : round(f.baselineP99, 2),
        f.ratio === undefined ? '' : `×${round(f.ratio, 1)}`,
      ]),
    ]);
    say(
      `  n = repetitions timed${flags.quick ? ` (--quick: a page stops once its own time passes ${QUICK_PAGE_BUDGET_MS / 1000} s, after at least ${MIN_REPETITIONS})` : ''}; page and baseline alternate`,
    );
    say('  baselines (same rows, no total, no rendering):');
    for (const p of pages) if (p.baseline) say(`    ${p.label}: ${p.baseline.text}`);
    say(
      '  every answer checked: status 200, the expected table rows (50 per list page), its totals and ids',
    );

    heading('where the time goes: the library calls the pages make, timed alone, ms');
    const partReps = flags.quick ? 3 : 20;
    const breakdown: { call: string; p50: number; max: number }[] = [];
    for (const [call, fn] of parts) {
      // No warm-up: the pages above ran each of these many times.
      const times: number[] = [];
      for (let i = 0; i < partReps; i++) {
        const t0 = performance.now();
        await fn();
        times.push(performance.now() - t0);
      }
      breakdown.push({ call, p50: percentile(times, 50), max: Math.max(...times) });
    }
    table([
      ['call', 'p50', `max of ${partReps}`],
      ...breakdown.map((b) => [b.call, round(b.p50, 1), round(b.max, 1)]),
    ]);

    heading(
      'plans of the list statements (EXPLAIN, not run; the statements of listSagas/listDeadLetters)',
    );
    for (const p of plans) {
      say(`  ${p.query}: ${p.top}`);
      say(`    scans: ${p.scans.join('; ')}`);
    }
    const seq = plans.filter((p) => p.seqScan);
    const slow = figures.filter((f) => f.p50 > SLOW_P50_MS);
    heading('findings');
    if (seq.length === 0) say('  no Seq Scan in the plans of the list statements');
    for (const p of seq)
      say(
        `  SEQ SCAN in ${p.query}: ${p.scans.filter((s) => s.startsWith('Seq Scan') || s.startsWith('Parallel Seq Scan')).join('; ')}`,
      );
    if (slow.length === 0) say(`  every page answers in under ${SLOW_P50_MS} ms at p50`);
    for (const f of slow)
      say(`  SLOW: ${f.label} p50 ${round(f.p50, 1)} ms (over ${SLOW_P50_MS} ms)`);
    const slowCalls = breakdown.filter((b) => b.p50 > SLOW_P50_MS);
    for (const b of slowCalls)
      say(`  slow call: ${b.call} alone takes ${round(b.p50, 1)} ms at p50`);
    say(
      `  total time ${round((wallMs() - started) / 1000, 1)} s, load average now ${machine().loadAverage1m}`,
    );

    if (flags.json) {
      say(
        JSON.stringify({
          benchmark: 'dashboard',
          quick: flags.quick,
          sagas: expected.sagas,
          deadLetters: expected.dead,
          handled: expected.handled,
          repetitions,
          loadSeconds: round(loadSeconds, 1),
          pages: figures.map((f) => ({
            page: f.label,
            url: f.url,
            repetitions: f.n,
            p50Ms: round(f.p50, 2),
            p99Ms: round(f.p99, 2),
            bytes: f.bytes,
            ...(f.baselineP50 === undefined
              ? {}
              : {
                  baselineP50Ms: round(f.baselineP50, 3),
                  baselineP99Ms: round(f.baselineP99 ?? Number.NaN, 3),
                  ratioP50: round(f.ratio ?? Number.NaN, 2),
                }),
          })),
          breakdown: breakdown.map((b) => ({ call: b.call, p50Ms: round(b.p50, 2) })),
          plans: plans.map((p) => ({
            query: p.query,
            top: p.top,
            scans: p.scans,
            seqScan: p.seqScan,
          })),
          seqScan: seq.length > 0,
          slowPages: slow.map((f) => f.label),
          postgres: settings,
          machine: machine(),
        }),
      );
    }
  } finally {
    await dashboard?.close();
    await db.close();
    await cluster.stop();
  }
}

/** The saga whose detail page is timed: a stuck one (g % 20 = 0) near the newest. */
function detailSagaNumber(rows: number): number {
  return rows - (rows % 20) - 20;
}

/**
 * 100,000 sagas, one a second, states as `sagaState` (5 % stuck, 1 %
 * running — all among the newest tenth —, 15 % compensated, the rest
 * completed), with input, output or error as Baton writes them; every other
 * one started in a trace. One stuck saga gets three steps for its detail page.
 */
async function loadSagas(db: PgDatabase, rows: number): Promise<void> {
  await db.query(
    `INSERT INTO baton.sagas (id, name, key, key_seq, input, state, stuck_from, output, error,
       lease_owner, lease_until, fence, wake_at, deadline, waiting_for, runs, created_at, updated_at,
       finished_at, trace)
     SELECT 'saga-' || lpad(g::text, 7, '0'), (ARRAY['place-order', 'refund-order', 'ship-order'])[1 + g % 3],
       'order:' || g, 1,
       jsonb_build_object('orderId', g, 'customerId', 'c' || (g % 997), 'amount', (g % 1000) * 1.5,
                          'lines', jsonb_build_array(jsonb_build_object('sku', 'sku-' || (g % 89), 'qty', 1 + g % 4))),
       st, CASE WHEN st = 'stuck' THEN 'compensating' END,
       CASE WHEN st = 'completed' THEN jsonb_build_object('shipmentId', 's' || g) END,
       CASE WHEN st = 'stuck' THEN 'compensation of step reserve-stock failed 10 times: Error: inventory service answered 503 (order ' || g || ')'
            WHEN st = 'compensated' THEN 'step charge-card failed: card declined' END,
       NULL, NULL, 1, t, CASE WHEN st = 'running' THEN t + interval '1 hour' END,
       CASE WHEN st = 'running' THEN 'retry of step charge-card' END,
       1 + g % 3, t, t + interval '2 seconds',
       CASE WHEN st IN ('completed', 'compensated') THEN t + interval '2 seconds' END,
       CASE WHEN g % 2 = 0 THEN jsonb_build_object('traceparent', '00-' || md5(g::text) || '-' || left(md5('s' || g), 16) || '-01') END
     FROM (SELECT g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' AS t,
             CASE WHEN g % 20 = 0 THEN 'stuck'
                  WHEN g % 20 IN (1, 2) AND g > $1::int * 9 / 10 THEN 'running'
                  WHEN g % 20 IN (3, 4, 5) THEN 'compensated'
                  ELSE 'completed' END AS st
           FROM generate_series(1, $1::int) g) x`,
    [rows],
  );
  const id = `saga-${String(detailSagaNumber(rows)).padStart(7, '0')}`;
  await db.query(
    `INSERT INTO baton.saga_steps (saga_id, name, kind, ordinal, state, result, attempts,
       compensation_attempts, last_error, started_at, completed_at, compensated_at)
     SELECT $1, s.name, s.kind, s.ordinal, s.state, s.result, 1, s.comp, s.err,
       c.created_at + s.ordinal * interval '100 ms',
       c.created_at + s.ordinal * interval '100 ms' + interval '50 ms',
       CASE WHEN s.state = 'compensated' THEN c.created_at + interval '1 second' END
     FROM baton.sagas c, (VALUES
       ('create-order', 'local', 0, 'compensated', '{"orderId": 1}'::jsonb, 1, NULL),
       ('reserve-stock', 'reserve', 1, 'completed', '{"hold": "h-1"}'::jsonb, 10,
        'Error: inventory service answered 503'),
       ('charge-card', 'call', 2, 'failed', NULL, 0, 'card declined')
     ) AS s(name, kind, ordinal, state, result, comp, err)
     WHERE c.id = $1`,
    [id],
  );
}

/**
 * Two subscriptions, and rows × (1 + HANDLED_PER_DEAD) inbox entries,
 * every fourth one dead (attempts exhausted, with its error), the
 * others handled — so the dead letters are spread over the table and only
 * the partial indexes find them quickly. Sealed with `baton.inbox_seal`,
 * as the consumer's insert does.
 */
export async function loadInbox(db: PgDatabase, rows: number, handled: number): Promise<void> {
  await db.query(
    `INSERT INTO baton.subscriptions (name, source, cursor, types, on_dead_letter, seal)
     SELECT name, 'orders', $2::text, '{}', 'block-key', baton.cursor_seal(name, $2::text)
     FROM unnest($1::text[]) AS name`,
    [SUBSCRIPTIONS, String(rows + handled)],
  );
  const every = 1 + HANDLED_PER_DEAD;
  const total = rows + handled;
  const half = Math.floor(total / 2);
  // Two halves at once (ids interleave; each half is in g order): the load is CPU-bound.
  const insert = (from: number, to: number) =>
    db.query(
      `INSERT INTO baton.inbox (subscription, position, event_id, type, key, version, payload, headers,
       occurred_at, source, status, attempts, next_attempt_at, last_error, received_at, handled_at, seal)
     SELECT sub, g::text, ev, 'order.placed', k, g, p, h, t, 'orders', st,
       CASE WHEN st = 'dead' THEN 10 ELSE 1 END, t,
       CASE WHEN st = 'dead' THEN 'Error: handler failed 10 times: duplicate key value violates unique constraint "shipments_order_id_key" (order ' || g || ')' END,
       t + interval '20 ms', CASE WHEN st = 'handled' THEN t + interval '40 ms' END,
       baton.inbox_seal(sub, ev, 'order.placed', k, g, p, h, st)
     FROM (SELECT g, md5('event-' || g)::uuid AS ev,
             ($1::text[])[1 + (g / $3) % 2] AS sub,
             'order:' || (g % 50000) AS k,
             jsonb_build_object('orderId', g, 'customerId', 'c' || (g % 997), 'total', (g % 1000) * 1.5) AS p,
             jsonb_build_object('traceparent', '00-' || md5(g::text) || '-' || left(md5('s' || g), 16) || '-01') AS h,
             timestamptz '2026-01-01 00:00:00+00' + g * interval '100 ms' AS t,
             CASE WHEN g % $3 = 0 THEN 'dead' ELSE 'handled' END AS st
           FROM generate_series($2::int, $4::int) g ORDER BY g) x`,
      [SUBSCRIPTIONS, from, every, to],
    );
  await Promise.all([insert(1, half), insert(half + 1, total)]);
}

interface Expected {
  sagas: number;
  states: Record<SagaStateName, number>;
  dead: number;
  handled: number;
  deadBySubscription: Record<string, number>;
}

/** Counts the rows back from the tables; throws (no figure printed) if any differs from what was inserted. */
async function checkCounts(db: PgDatabase, rows: number, handled: number): Promise<Expected> {
  const every = 1 + HANDLED_PER_DEAD;
  const states: Record<SagaStateName, number> = {
    stuck: 0,
    running: 0,
    compensated: 0,
    completed: 0,
  };
  for (let g = 1; g <= rows; g++) states[sagaState(g, rows)]++;
  const deadBySubscription: Record<string, number> = {};
  for (const s of SUBSCRIPTIONS) deadBySubscription[s] = 0;
  for (let g = every; g <= rows + handled; g += every) {
    const sub = SUBSCRIPTIONS[Math.floor(g / every) % 2] as string;
    deadBySubscription[sub] = (deadBySubscription[sub] ?? 0) + 1;
  }
  const expected: Expected = { sagas: rows, states, dead: rows, handled, deadBySubscription };

  const sagaRows = await db.query<{ state: string; n: string }>(
    'SELECT state, count(*) AS n FROM baton.sagas GROUP BY state',
  );
  const inboxRows = await db.query<{ subscription: string; status: string; n: string }>(
    'SELECT subscription, status, count(*) AS n FROM baton.inbox GROUP BY subscription, status',
  );
  const subscriptions = await db.query<{ n: string }>(
    'SELECT count(*) AS n FROM baton.subscriptions',
  );
  const badSeals = await db.query<{ n: string }>(
    `SELECT count(*) AS n FROM baton.inbox
      WHERE seal IS DISTINCT FROM baton.inbox_seal(subscription, event_id, type, key, version, payload, headers, status)`,
  );
  const steps = await db.query<{ n: string }>('SELECT count(*) AS n FROM baton.saga_steps');
  const got = {
    sagas: sagaRows.rows.reduce((sum, r) => sum + Number(r.n), 0),
    states: Object.fromEntries(sagaRows.rows.map((r) => [r.state, Number(r.n)])),
    dead: inboxRows.rows.filter((r) => r.status === 'dead').reduce((s, r) => s + Number(r.n), 0),
    handled: inboxRows.rows
      .filter((r) => r.status === 'handled')
      .reduce((s, r) => s + Number(r.n), 0),
    deadBySubscription: Object.fromEntries(
      inboxRows.rows.filter((r) => r.status === 'dead').map((r) => [r.subscription, Number(r.n)]),
    ),
    otherStatuses: inboxRows.rows.filter((r) => r.status !== 'dead' && r.status !== 'handled')
      .length,
    subscriptions: Number(subscriptions.rows[0]?.n),
    badSeals: Number(badSeals.rows[0]?.n),
    steps: Number(steps.rows[0]?.n),
  };
  const want = {
    ...expected,
    otherStatuses: 0,
    subscriptions: SUBSCRIPTIONS.length,
    badSeals: 0,
    steps: 3,
  };
  const same = (a: unknown, b: unknown) => JSON.stringify(sorted(a)) === JSON.stringify(sorted(b));
  if (!same(got, want)) {
    throw new Error(
      `the tables do not hold what was inserted — no figures printed.\n  expected ${JSON.stringify(sorted(want))}\n  found    ${JSON.stringify(sorted(got))}`,
    );
  }
  table([
    ['table', 'rows (counted back)'],
    [
      'baton.sagas',
      `${got.sagas} (${Object.entries(states)
        .map(([s, n]) => `${s} ${n}`)
        .join(', ')})`,
    ],
    [
      'baton.inbox',
      `${got.dead + got.handled} (dead ${got.dead}: ${Object.entries(deadBySubscription)
        .map(([s, n]) => `${s} ${n}`)
        .join(', ')}; handled ${got.handled}); every seal matches inbox_seal()`,
    ],
    ['baton.subscriptions', String(got.subscriptions)],
    ['baton.saga_steps', `${got.steps} (the detail page's saga)`],
  ]);
  return expected;
}

/** An object with its keys in order, recursively (for comparing counts). */
function sorted(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => [k, sorted(v)]),
  );
}

type Get = (
  url: string,
) => Promise<{ status: number; headers: Record<string, string>; body: string }>;

/** Follows the "next page" link `times` times from `start`; returns the URL of the page reached. */
async function follow(get: Get, start: string, times: number): Promise<string> {
  let url = start;
  for (let i = 0; i < times; i++) {
    const page = await get(url);
    if (page.status !== 200) throw new Error(`${url} answered ${page.status}`);
    const next = /<a rel="next" href="([^"]+)">/.exec(page.body)?.[1];
    if (!next) throw new Error(`${url} has no next-page link (page ${i + 1})`);
    url = next.replaceAll('&amp;', '&');
  }
  return url;
}

/** Table rows of the page's tables (`<tr>` inside `<tbody>`). */
function tableRows(body: string): number {
  let n = 0;
  for (const tbody of body.matchAll(/<tbody>([\s\S]*?)<\/tbody>/g))
    n += (tbody[1]?.match(/<tr>/g) ?? []).length;
  return n;
}

function checkAnswer(page: Page, answer: { status: number; body: string }): void {
  if (answer.status !== 200)
    throw new Error(`${page.url} answered ${answer.status}: ${answer.body.slice(0, 400)}`);
  const rows = tableRows(answer.body);
  if (rows !== page.rows) throw new Error(`${page.url}: ${rows} table rows, expected ${page.rows}`);
  for (const text of page.contains)
    if (!answer.body.includes(text)) throw new Error(`${page.url}: the page lacks "${text}"`);
}

/** Times one page (and its baseline, alternating within each repetition); every answer is checked. */
async function measure(
  page: Page,
  get: Get,
  db: PgDatabase,
  repetitions: number,
  budgetMs: number,
): Promise<Figures> {
  const times: number[] = [];
  const baseline: number[] = [];
  let bytes = 0;
  const runBaseline = async () => {
    if (!page.baseline) return;
    const t0 = performance.now();
    const r = await db.query(page.baseline.text, page.baseline.values);
    const ms = performance.now() - t0;
    if (r.rows.length !== PAGE_SIZE)
      throw new Error(`baseline of ${page.label}: ${r.rows.length} rows, expected ${PAGE_SIZE}`);
    return ms;
  };
  const runPage = async () => {
    const t0 = performance.now();
    const answer = await get(page.url);
    const ms = performance.now() - t0;
    checkAnswer(page, answer);
    bytes = Buffer.byteLength(answer.body);
    return ms;
  };
  // Warm-up (a page the next-page links led through was read already).
  if (!page.readAlready) await runPage();
  await runBaseline();
  let spent = 0;
  for (let i = 0; i < repetitions; i++) {
    // --quick: a slow page stops at its time budget (after at least MIN_REPETITIONS).
    if (spent > budgetMs && i >= MIN_REPETITIONS) break;
    const order = i % 2 === 0 ? [runPage, runBaseline] : [runBaseline, runPage];
    for (const step of order) {
      const ms = await step();
      if (ms === undefined) continue;
      (step === runPage ? times : baseline).push(ms);
      if (step === runPage) spent += ms;
    }
  }
  const p50 = percentile(times, 50);
  const figures: Figures = {
    label: page.label,
    url: page.url,
    p50,
    p99: percentile(times, 99),
    n: times.length,
    bytes,
  };
  if (baseline.length > 0) {
    figures.baselineP50 = percentile(baseline, 50);
    figures.baselineP99 = percentile(baseline, 99);
    figures.ratio = p50 / figures.baselineP50;
  }
  return figures;
}

/** The statements of listSagas / listDeadLetters (copied from src/sagas/saga-admin.ts, src/messaging/dead-letters.ts). */
const LIST_SAGAS = `SELECT id, name, key, state, stuck_from, error, waiting_for, runs, created_at, updated_at, finished_at,
    (SELECT count(*) FROM baton.sagas WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR name = $2)) AS total
   FROM baton.sagas
  WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR name = $2)
    AND ($4::text IS NULL OR (created_at, id) < (SELECT created_at, id FROM baton.sagas WHERE id = $4))
  ORDER BY created_at DESC, id DESC LIMIT $3`;
const LIST_DEAD_LETTERS = `SELECT id::text, subscription, position, event_id::text, type, key, attempts,
    last_error, received_at,
    (SELECT count(*) FROM baton.inbox WHERE status = 'dead' AND ($1::text IS NULL OR subscription = $1)) AS total
   FROM baton.inbox
  WHERE status = 'dead' AND ($1::text IS NULL OR subscription = $1) AND ($3::bigint IS NULL OR inbox.id > $3)
  ORDER BY inbox.id LIMIT $2`;

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Parent Relationship'?: string;
  'Subplan Name'?: string;
  'Total Cost'?: number;
  'Plan Rows'?: number;
  Plans?: PlanNode[];
}

/** EXPLAIN (no ANALYZE) of the list statements with the values the pages pass; flags any Seq Scan. */
async function explainListQueries(
  db: PgDatabase,
  lastSagaId: string,
  lastDeadId: string,
  subscription: string,
): Promise<PlanLine[]> {
  const cases: [string, string, unknown[]][] = [
    ['listSagas, first page', LIST_SAGAS, [null, null, PAGE_SIZE, null]],
    ['listSagas, state=stuck', LIST_SAGAS, ['stuck', null, PAGE_SIZE, null]],
    [`listSagas, page ${DEEP_PAGES + 1}`, LIST_SAGAS, [null, null, PAGE_SIZE, lastSagaId]],
    ['listDeadLetters, first page', LIST_DEAD_LETTERS, [null, PAGE_SIZE, null]],
    ['listDeadLetters, one subscription', LIST_DEAD_LETTERS, [subscription, PAGE_SIZE, null]],
    [`listDeadLetters, page ${DEEP_PAGES + 1}`, LIST_DEAD_LETTERS, [null, PAGE_SIZE, lastDeadId]],
  ];
  const out: PlanLine[] = [];
  for (const [query, text, values] of cases) {
    const r = await db.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      `EXPLAIN (FORMAT JSON) ${text}`,
      values,
    );
    const plan = r.rows[0]?.['QUERY PLAN'][0]?.Plan;
    if (!plan) throw new Error(`no plan for ${query}`);
    const scans: string[] = [];
    const walk = (node: PlanNode, where: string) => {
      const here = node['Subplan Name'] ?? where;
      if (node['Relation Name'])
        scans.push(
          `${node['Node Type']}${node['Index Name'] ? ` using ${node['Index Name']}` : ''} on ${node['Relation Name']}${here ? ` (${here})` : ''}`,
        );
      for (const child of node.Plans ?? []) walk(child, here);
    };
    walk(plan, '');
    out.push({
      query,
      top: `${plan['Node Type']} (cost ${plan['Total Cost']}, rows ${plan['Plan Rows']})`,
      scans,
      seqScan: scans.some((s) => /Seq Scan/.test(s)),
    });
  }
  return out;
}

async function readSettings(db: PgDatabase): Promise<Record<string, string>> {
  const names = [
    'server_version',
    'fsync',
    'synchronous_commit',
    'shared_buffers',
    'work_mem',
    'random_page_cost',
  ];
  const r = await db.query<{ name: string; setting: string }>(
    'SELECT name, current_setting(name) AS setting FROM unnest($1::text[]) AS name',
    [names],
  );
  return Object.fromEntries(r.rows.map((row) => [row.name, row.setting]));
}
