import { DBOS } from '@dbos-inc/dbos-sdk';
import { PostgresDataSource } from '@dbos-inc/postgres-datasource';
import type { Database } from '../../src/db/executor.ts';
import type { BenchClusters } from './clusters.ts';
import { type LocalOptions, type LocalRun, pick, xid } from './saga-local.ts';
import { closedLoop, latencySummary } from './saga-measure.ts';
import { round, wallMs } from './stats.ts';

/**
 * The peer of `saga --local`: DBOS Transact, the same three rows as a
 * workflow of three DBOS transactions — each runs in one database
 * transaction that also records its output, the guarantee Baton's local
 * steps give (effect and record commit together). System database and
 * application tables in one database of the same server as Baton's run.
 * The caller starts the workflow and awaits its result (`startWorkflow`,
 * then `getResult`), as Baton's caller does with `start` and `waitFor`.
 *
 * Versions: `@dbos-inc/dbos-sdk` 4.24.16 with `@dbos-inc/postgres-datasource`
 * 4.24.16, the newest pair the registry this project installs from has — the
 * datasources of the 5 line are not on it, and the 4.24 datasource does not
 * run on SDK 5.3 (`createTransactionCompletionSchemaPG is not a function`).
 *
 * DBOS keeps one instance per process (`DBOS.launch`): this runs once per
 * bench process and shuts it down after.
 */
export interface DbosResult {
  run: LocalRun;
  single: LocalRun;
  writingCommitsPerWorkflow: number;
}

const STEPS_TABLE = `CREATE TABLE steps (unit text NOT NULL, step int NOT NULL,
  at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (unit, step))`;

export async function runDbosLocal(clusters: BenchClusters, o: LocalOptions): Promise<DbosResult> {
  const { url, db } = await clusters.database(clusters.producer, 'saga_dbos', 4);
  await db.query(STEPS_TABLE);
  const target = new URL(url);
  const connection = {
    host: target.hostname,
    port: Number(target.port),
    user: decodeURIComponent(target.username),
    password: decodeURIComponent(target.password),
    database: target.pathname.slice(1),
    max: 20,
  };
  await PostgresDataSource.initializeDBOSSchema(connection);
  const source = new PostgresDataSource('bench-app', connection);
  const insertStep = (unit: string, step: number) =>
    source.runTransaction(
      async () => {
        await PostgresDataSource.client`INSERT INTO steps (unit, step) VALUES (${unit}, ${step})`;
      },
      { name: `step-${step}` },
    );
  const threeSteps = DBOS.registerWorkflow(
    async (unit: string) => {
      for (const step of [1, 2, 3]) await insertStep(unit, step);
      return null;
    },
    { name: 'three-local-steps' },
  );
  DBOS.setConfig({
    name: 'bench-saga-local',
    systemDatabaseUrl: url,
    systemDatabasePoolSize: 20,
    logLevel: 'error',
  });
  await DBOS.launch();
  try {
    const unit = async (id: string) => {
      const handle = await DBOS.startWorkflow(threeSteps, { workflowID: id })(id);
      await handle.getResult();
    };
    const before = await xid(db);
    const ms: number[] = [];
    for (let i = 0; i < o.single; i++) {
      const t = wallMs();
      await unit(`ds-${i}`);
      ms.push(wallMs() - t);
    }
    const writes = (await xid(db)) - before - 1;
    const seconds = ms.reduce((a, b) => a + b, 0) / 1000;
    const single: LocalRun = {
      perSec: round(o.single / seconds, 1),
      completed: o.single,
      ...pick(latencySummary(ms)),
    };
    const w = await closedLoop({ ...o, prefix: 'd', unit });
    await verify(db);
    return {
      run: { perSec: w.perSec, completed: w.completed, ...pick(latencySummary(w.latenciesMs)) },
      single,
      writingCommitsPerWorkflow: round(writes / o.single, 2),
    };
  } finally {
    await DBOS.shutdown();
  }
}

/** Counts against the tables: every successful workflow wrote its three rows once. */
async function verify(db: Database): Promise<void> {
  const r = await db.query<{ workflows: number; succeeded: number; rows: number; bad: number }>(
    `SELECT (SELECT count(*)::int FROM dbos.workflow_status) AS workflows,
            (SELECT count(*)::int FROM dbos.workflow_status WHERE status = 'SUCCESS') AS succeeded,
            (SELECT count(*)::int FROM steps) AS rows,
            (SELECT count(*)::int FROM (SELECT unit FROM steps GROUP BY unit HAVING count(*) <> 3) x) AS bad`,
  );
  const row = r.rows[0];
  if (!row || row.succeeded !== row.workflows || row.rows !== 3 * row.workflows || row.bad !== 0)
    throw new Error(
      `DBOS count check failed: ${JSON.stringify(row)} (every workflow succeeded with its three rows); no figure is printed from this run`,
    );
}
