import pg from 'pg';
import type { Database } from '../../src/db/executor.ts';
import { createBaton, saga } from '../../src/index.ts';
import type { SagaWorker } from '../../src/sagas/saga-worker.ts';
import type { BenchClusters } from './clusters.ts';
import { FLOOR_TABLES, floorUnit } from './saga-floor.ts';
import { closedLoop, latencySummary } from './saga-measure.ts';
import { round, wallMs } from './stats.ts';

/**
 * `saga --local`: a saga of three local steps — each one row in the
 * orchestrator's own database — run in this process, against the same three
 * writes as three plain transactions. What it isolates is the cost of the
 * saga machinery itself (its rows, claims, commits and completion), with no
 * participant and no HTTP in between.
 */
export interface LocalOptions {
  inFlight: number;
  warmupMs: number;
  measureMs: number;
  /** Sagas started one after another, each awaited, for the single-flight figures. */
  single: number;
}

export interface LocalRun {
  perSec: number;
  completed: number;
  /** Caller-observed: start called → completion seen (Baton: `waitFor` returned). */
  p50Ms: number;
  p99Ms: number;
}

export interface LocalResult {
  baton: LocalRun;
  plain: LocalRun;
  /** Baton's durable writes as raw SQL, no Baton code (`saga-floor.ts`). */
  floor: LocalRun;
  ratio: number;
  floorRatio: number;
  single: { baton: LocalRun; plain: LocalRun; floor: LocalRun };
  /** Transactions that wrote (took a transaction id) per saga, alone on the cluster. */
  writingCommitsPerSaga: number;
  plainWritingCommitsPerUnit: number;
  floorWritingCommitsPerUnit: number;
}

const STEPS_TABLE = `CREATE TABLE steps (unit text NOT NULL, step int NOT NULL,
  at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (unit, step))`;
const INSERT_STEP = 'INSERT INTO steps (unit, step) VALUES ($1, $2)';

let runNo = 0;

export async function runLocal(clusters: BenchClusters, o: LocalOptions): Promise<LocalResult> {
  const n = ++runNo;
  const { url, db } = await clusters.database(clusters.producer, `saga_local_${n}`, 20);
  await db.query(STEPS_TABLE);
  await db.query(FLOOR_TABLES);
  const baton = createBaton({ db, service: 'orders' });
  await baton.migrate();
  const threeSteps = saga<{ unit: string }, null>('three-local-steps', async (ctx, input) => {
    for (const step of [1, 2, 3])
      await ctx.step(`step-${step}`, (tx) => tx.query(INSERT_STEP, [input.unit, step]));
    return null;
  });
  baton.sagas.define(threeSteps);
  const workers: SagaWorker[] = [0, 1].map((i) =>
    baton.sagas.worker({ concurrency: 25, pollIntervalMs: 250, id: `w${i}` }),
  );
  for (const w of workers) w.start();
  const plain = new pg.Pool({ connectionString: url, max: 20, application_name: 'bench-plain' });
  try {
    const sagaUnit = async (id: string) => {
      const started = await baton.sagas.start('three-local-steps', { unit: id }, { id });
      const status = await baton.sagas.waitFor(started, 60_000);
      if (status.state !== 'completed') throw new Error(`saga ${id} ended ${status.state}`);
    };
    const plainUnit = async (id: string) => {
      for (const step of [1, 2, 3]) await plain.query(INSERT_STEP, [`plain-${id}`, step]);
    };
    const floor = (id: string) => floorUnit(plain, id, INSERT_STEP);
    // The ids each figure counted, by prefix: each is checked against the tables before printing.
    const counted: Record<string, string[]> = {};
    const loop = async (prefix: string, unit: (id: string) => Promise<void>) => {
      const w = await closedLoop({ ...o, prefix, unit });
      counted[prefix] = w.ids;
      return { perSec: w.perSec, completed: w.completed, ...pick(latencySummary(w.latenciesMs)) };
    };
    // Single flight first (a quiet database: the transaction-id count is this work's alone).
    const single = async (prefix: string, unit: (id: string) => Promise<void>) => {
      const before = await xid(db);
      const ms: number[] = [];
      for (let i = 0; i < o.single; i++) {
        const t = wallMs();
        await unit(`${prefix}-${i}`);
        ms.push(wallMs() - t);
      }
      const writes = (await xid(db)) - before - 1; // the second xid() took one itself
      counted[prefix] = Array.from({ length: o.single }, (_, i) => `${prefix}-${i}`);
      const seconds = ms.reduce((a, b) => a + b, 0) / 1000;
      return {
        run: {
          perSec: round(o.single / seconds, 1),
          completed: o.single,
          ...pick(latencySummary(ms)),
        },
        writesPerUnit: round(writes / o.single, 2),
      };
    };
    const singleBaton = await single('s', sagaUnit);
    const singlePlain = await single('sp', plainUnit);
    const singleFloor = await single('sf', floor);
    const batonRun = await loop('b', sagaUnit);
    const plainRun = await loop('p', plainUnit);
    const floorRun = await loop('f', floor);
    await verify(db);
    await verifyCounted(db, {
      baton: [...(counted.s ?? []), ...(counted.b ?? [])],
      floor: [...(counted.sf ?? []), ...(counted.f ?? [])],
      plain: [...(counted.sp ?? []), ...(counted.p ?? [])],
    });
    return {
      baton: batonRun,
      plain: plainRun,
      floor: floorRun,
      ratio: round(batonRun.perSec / plainRun.perSec, 3),
      floorRatio: round(floorRun.perSec / plainRun.perSec, 3),
      single: { baton: singleBaton.run, plain: singlePlain.run, floor: singleFloor.run },
      writingCommitsPerSaga: singleBaton.writesPerUnit,
      plainWritingCommitsPerUnit: singlePlain.writesPerUnit,
      floorWritingCommitsPerUnit: singleFloor.writesPerUnit,
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await plain.end();
  }
}

/**
 * Counts against the tables: every completed saga wrote its three rows once,
 * every floor unit too (and its three step records), every plain unit too.
 */
async function verify(db: Database): Promise<void> {
  const r = await db.query<{
    sagas: number;
    completed: number;
    saga_steps: number;
    floors: number;
    floor_steps: number;
    floor_records: number;
    floor_open: number;
    bad: number;
  }>(
    `SELECT (SELECT count(*)::int FROM baton.sagas) AS sagas,
            (SELECT count(*)::int FROM baton.sagas WHERE state = 'completed') AS completed,
            (SELECT count(*)::int FROM steps WHERE unit NOT LIKE 'plain-%' AND unit NOT LIKE 'floor-%') AS saga_steps,
            (SELECT count(*)::int FROM floor_sagas WHERE state = 'completed') AS floors,
            (SELECT count(*)::int FROM steps WHERE unit LIKE 'floor-%') AS floor_steps,
            (SELECT count(*)::int FROM floor_steps WHERE state = 'completed') AS floor_records,
            (SELECT count(*)::int FROM floor_sagas WHERE state <> 'completed') AS floor_open,
            (SELECT count(*)::int FROM (SELECT unit FROM steps GROUP BY unit HAVING count(*) <> 3) x) AS bad`,
  );
  const row = r.rows[0];
  if (
    !row ||
    row.completed !== row.sagas ||
    row.saga_steps !== 3 * row.sagas ||
    row.floor_steps !== 3 * row.floors ||
    row.floor_records !== 3 * row.floors ||
    row.floor_open !== 0 ||
    row.bad !== 0
  )
    throw new Error(
      `count check failed: ${JSON.stringify(row)} (every saga and floor unit completed with three step rows, every unit three rows); no figure is printed from this run`,
    );
}

/** Every unit a figure counted is in the tables, whole: its saga (or floor unit) completed, its rows. */
async function verifyCounted(
  db: Database,
  ids: { baton: string[]; floor: string[]; plain: string[] },
): Promise<void> {
  const r = await db.query<{ baton: number; floor: number; plain: number }>(
    `SELECT (SELECT count(*)::int FROM baton.sagas g WHERE g.id = ANY($1) AND g.state = 'completed'
               AND (SELECT count(*) FROM steps WHERE unit = g.id) = 3) AS baton,
            (SELECT count(*)::int FROM floor_sagas f WHERE f.id = ANY($2) AND f.state = 'completed'
               AND (SELECT count(*) FROM steps WHERE unit = 'floor-' || f.id) = 3
               AND (SELECT count(*) FROM floor_steps WHERE saga_id = f.id AND state = 'completed') = 3) AS floor,
            (SELECT count(*)::int FROM unnest($3::text[]) u(id)
               WHERE (SELECT count(*) FROM steps WHERE unit = 'plain-' || u.id) = 3) AS plain`,
    [ids.baton, ids.floor, ids.plain],
  );
  const row = r.rows[0];
  const want = { baton: ids.baton.length, floor: ids.floor.length, plain: ids.plain.length };
  if (!row || row.baton !== want.baton || row.floor !== want.floor || row.plain !== want.plain)
    throw new Error(
      `count check failed: the figures counted ${JSON.stringify(want)} units, the tables hold ${JSON.stringify(row)} of them whole; no figure is printed from this run`,
    );
}

/** The cluster's next transaction id: how many writing transactions ran in between. */
export async function xid(db: Database): Promise<number> {
  const r = await db.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x');
  return Number(r.rows[0]?.x);
}

export function pick(s: { p50Ms: number; p99Ms: number }): { p50Ms: number; p99Ms: number } {
  return { p50Ms: s.p50Ms, p99Ms: s.p99Ms };
}
