/**
 * `npm run bench -- reconcile [--rows N] [--quick] [--json]`
 *
 * The caretaker's set reconciliation: an owner's entity table and a
 * referrer's replica of it, in two databases, with 100 injected divergences
 * of mixed kinds. Checksum bisection (owner served over signed HTTP) against
 * a naive baseline in the same run (stream every (id, version) from the
 * owner and diff in memory). See bench/README.md, "reconcile".
 */
import pg from 'pg';
import { httpSetSide, setSideRoute } from '../src/caretaker/http-set-side.ts';
import {
  diffListings,
  type LevelReport,
  reconcileSets,
  type SetDifference,
} from '../src/caretaker/set-reconciliation.ts';
import type { Member } from '../src/caretaker/set-side.ts';
import { encodeMembersResponse, jsonBytes } from '../src/caretaker/set-side-wire.ts';
import { sqlSetSide } from '../src/caretaker/sql-set-side.ts';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { PgDatabase } from '../src/db/pg-database.ts';
import { serveHttp } from '../src/http/node-server.ts';
import { createServiceHandler } from '../src/http/service-handler.ts';
import { signedClient } from '../src/http/signed-client.ts';
import { type MemberSource, ownerMemberSource } from '../src/references/members.ts';
import { ReplicaStore } from '../src/references/replica-store.ts';
import type { BenchFlags } from './support/args.ts';
import { machine } from './support/clusters.ts';
import { heading, say, table } from './support/report.ts';
import { median, round } from './support/stats.ts';

const DEFAULT_ROWS = 1_000_000;
const QUICK_ROWS = 200_000;
const SECRET = 'bench-reconcile-secret-0123456789';

// What EntityOwner.memberSource() gives for entity `customer` on `customers` copying the text column `name`.
const OWNER: MemberSource = ownerMemberSource({
  entity: 'customer',
  table: 'public.customers',
  keyColumn: 'id',
  key: { name: 'id', type: 'bigint', baseType: 'int8', elementType: null, typtype: 'b' },
  fields: [{ name: 'name', type: 'text', baseType: 'text', elementType: null, typtype: 'b' }],
  personal: [],
  schemaSql: '"baton"',
});
// Baton's own replica table of `customer` (ReplicaStore: the stored fields hash included).
const REPLICA_STORE = new ReplicaStore('"baton"', 'customer');
const REPLICA: MemberSource = REPLICA_STORE.memberSource();

type Kind = 'onlyInOwner' | 'onlyInReplica' | 'versionMismatch' | 'contentMismatch';
interface Injected {
  id: string;
  kind: Kind;
  what: string;
}

export async function run(flags: BenchFlags): Promise<void> {
  const rows = flags.rows ?? (flags.quick ? QUICK_ROWS : DEFAULT_ROWS);
  const repetitions = flags.quick ? 1 : 3;
  heading(`baton reconcile benchmark (${flags.quick ? 'quick' : 'full'}, ${rows} rows)`);
  const host = machine();
  say(
    `machine: ${host.cpus} × ${host.cpuModel}, ${host.memoryGb} GiB, ${host.kernel}, node ${host.node}, load ${host.loadAverage1m}`,
  );
  const cluster = await startEmbeddedPostgres();
  const dbs: PgDatabase[] = [];
  try {
    const open = async (name: string) => {
      const db = new PgDatabase({
        connectionString: await cluster.createDatabase(name),
        max: 4,
        applicationName: 'bench-reconcile',
      });
      dbs.push(db);
      return db;
    };
    const [ownerDb, replicaDb] = await Promise.all([
      open('reconcile_owner'),
      open('reconcile_replica'),
    ]);
    const settings = await readSettings(cluster.url());
    say(
      `postgres ${settings.server_version}: owner and replica are two databases of ONE embedded cluster (shared_buffers ${settings.shared_buffers}, work_mem ${settings.work_mem}, parallel workers/gather ${settings.max_parallel_workers_per_gather})`,
    );

    const loadStarted = performance.now();
    await load(ownerDb, replicaDb, rows);
    const injected = await inject(ownerDb, replicaDb, rows);
    const loadSeconds = (performance.now() - loadStarted) / 1000;
    say(
      `loaded ${rows} owner rows and their replica, injected ${injected.length} divergences in ${round(loadSeconds, 1)} s`,
    );

    const ownerSide = sqlSetSide(ownerDb, OWNER);
    const handler = createServiceHandler({
      auth: { type: 'hmac', secrets: [SECRET] },
      routes: [setSideRoute((name) => (name === 'customer' ? ownerSide : undefined))],
    });
    const server = await serveHttp((request, signal) => handler.handle(request, signal), {
      maxBodyBytes: 4 * 1024 * 1024,
    });
    try {
      const replicaSide = sqlSetSide(replicaDb, REPLICA);
      const runs: Measured[] = [];
      const baselines: Measured[] = [];
      let levels: LevelReport[] = [];
      for (let i = 0; i < repetitions; i++) {
        const remote = httpSetSide({
          client: signedClient({
            name: 'customers',
            url: `${server.url}/baton`,
            auth: { type: 'hmac', secret: SECRET },
          }),
          path: 'sets/customer',
        });
        const seen: LevelReport[] = [];
        const started = performance.now();
        const result = await reconcileSets(remote, replicaSide, { onLevel: (l) => seen.push(l) });
        const seconds = (performance.now() - started) / 1000;
        levels = seen;
        runs.push({
          seconds,
          bytes: remote.traffic.requestBytes + remote.traffic.responseBytes,
          calls: remote.traffic.calls,
          ...score(result, injected),
        });
        baselines.push(await naiveBaseline(ownerDb, replicaDb, injected));
      }
      report(rows, injected.length, runs, baselines, levels, loadSeconds, flags, settings);
    } finally {
      await server.close();
    }
  } finally {
    await Promise.all(dbs.map((db) => db.close().catch(() => {})));
    await cluster.stop();
  }
}

interface Measured {
  seconds: number;
  bytes: number;
  calls: number;
  found: number;
  unexpected: number;
}

/**
 * Loads with one INSERT … SELECT generate_series per table. Owner: a
 * `customers` table (no capture trigger: this measures the comparison, not
 * the writes) with its versions in baton.versions_customer, as Baton's entity
 * capture keeps them. Replica: Baton's replica shape (id, state, version,
 * copied fields). VACUUM ANALYZE afterwards, as a long-lived table would be.
 */
async function load(owner: PgDatabase, replica: PgDatabase, rows: number): Promise<void> {
  await Promise.all([migrate(owner, 'baton'), migrate(replica, 'baton')]);
  await Promise.all([
    owner.query(`
      CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL);
      INSERT INTO customers
        SELECT g, 'customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, ${rows}) g;
      CREATE TABLE baton.versions_customer (id bigint PRIMARY KEY, version bigint NOT NULL);
      INSERT INTO baton.versions_customer SELECT g, 1 + g % 7 FROM generate_series(1, ${rows}) g;`),
    (async () => {
      await REPLICA_STORE.install(replica, 'bigint', {
        name: 'customers',
        url: 'http://127.0.0.1:1/baton',
        subscription: 'bench',
      });
      await replica.query(`
        INSERT INTO baton.replica_customer (id, state, version, fields)
          SELECT g, 'ACTIVE', 1 + g % 7, jsonb_build_object('name', 'customer ' || g)
          FROM generate_series(1, ${rows}) g`);
    })(),
  ]);
}

/**
 * 100 divergences, ids drawn with a fixed seed: 25 lost upserts (replica row
 * missing), 25 lost deletes (owner row deleted, replica still active), 25
 * stale replicas (owner version moved on), 15 true orphans (replica ids the
 * owner never had), 5 replica rows edited by hand (version ahead), 5 whose
 * copied fields were edited by hand (version unchanged).
 */
async function inject(owner: PgDatabase, replica: PgDatabase, rows: number): Promise<Injected[]> {
  const ids = distinctIds(85, rows);
  const take = (n: number) => ids.splice(0, n);
  const lostUpserts = take(25);
  const lostDeletes = take(25);
  const stale = take(25);
  const edited = take(5);
  const forged = take(5);
  const orphans = Array.from({ length: 15 }, (_, i) => rows + 1000 + i * 17);
  await owner.query('DELETE FROM customers WHERE id = ANY($1::bigint[])', [lostDeletes]);
  await owner.query(
    'UPDATE baton.versions_customer SET version = version + 1 WHERE id = ANY($1::bigint[])',
    [stale],
  );
  await replica.query('DELETE FROM baton.replica_customer WHERE id = ANY($1::bigint[])', [
    lostUpserts,
  ]);
  await replica.query(
    `INSERT INTO baton.replica_customer (id, state, version, fields)
     SELECT g, 'ACTIVE', 1, '{}' FROM unnest($1::bigint[]) g`,
    [orphans],
  );
  await replica.query(
    'UPDATE baton.replica_customer SET version = version + 10 WHERE id = ANY($1::bigint[])',
    [edited],
  );
  await replica.query(
    `UPDATE baton.replica_customer SET fields = '{"name": "forged"}' WHERE id = ANY($1::bigint[])`,
    [forged],
  );
  await Promise.all([
    owner.query('VACUUM ANALYZE customers, baton.versions_customer'),
    replica.query('VACUUM ANALYZE baton.replica_customer'),
  ]);
  const mark = (list: number[], kind: Kind, what: string) =>
    list.map((id) => ({ id: String(id), kind, what }));
  return [
    ...mark(lostUpserts, 'onlyInOwner', 'lost upsert'),
    ...mark(lostDeletes, 'onlyInReplica', 'lost delete'),
    ...mark(stale, 'versionMismatch', 'stale replica'),
    ...mark(orphans, 'onlyInReplica', 'true orphan'),
    ...mark(edited, 'versionMismatch', 'replica edited by hand'),
    ...mark(forged, 'contentMismatch', 'fields edited by hand'),
  ];
}

function distinctIds(count: number, rows: number): number[] {
  let state = 20_261_122;
  const next = () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state;
  };
  const ids = new Set<number>();
  while (ids.size < count) ids.add(1 + (next() % rows));
  return [...ids];
}

/** How many injected divergences were found in their class, and how many reported ones were not injected. */
function score(
  difference: SetDifference,
  injected: readonly Injected[],
): { found: number; unexpected: number } {
  const reported = new Map<string, Kind>();
  for (const m of difference.onlyInOwner) reported.set(m.id, 'onlyInOwner');
  for (const m of difference.onlyInReplica) reported.set(m.id, 'onlyInReplica');
  for (const m of difference.versionMismatch) reported.set(m.id, 'versionMismatch');
  for (const m of difference.contentMismatch) reported.set(m.id, 'contentMismatch');
  const found = injected.filter((d) => reported.get(d.id) === d.kind).length;
  return { found, unexpected: reported.size - found };
}

/**
 * The naive way: stream every (id, version, fields hash) of both sides and diff in
 * memory. Reads straight from PostgreSQL with a cursor (50,000 rows per
 * fetch): no HTTP, no signing, no JSON in the timed part, so it is a lower
 * bound for any streaming baseline. Its bytes are what the owner's pairs
 * weigh as JSON (`[["id",version],…]`, the members encoding), counted after
 * the clock stops.
 */
async function naiveBaseline(
  owner: PgDatabase,
  replica: PgDatabase,
  injected: readonly Injected[],
): Promise<Measured> {
  const started = performance.now();
  const [ownerMembers, replicaMembers] = await Promise.all([
    streamAll(owner, OWNER),
    streamAll(replica, REPLICA),
  ]);
  const difference = diffListings(ownerMembers, replicaMembers);
  const seconds = (performance.now() - started) / 1000;
  let bytes = 0;
  for (let i = 0; i < ownerMembers.length; i += 50_000) {
    bytes += jsonBytes(encodeMembersResponse(ownerMembers.slice(i, i + 50_000)));
  }
  return { seconds, bytes, calls: 1, ...score(difference, injected) };
}

async function streamAll(db: PgDatabase, source: MemberSource): Promise<Member[]> {
  return db.transaction(async (tx) => {
    if (source.setupSql) await tx.query(source.setupSql);
    await tx.query(
      `DECLARE members NO SCROLL CURSOR FOR
       SELECT id, version::bigint AS version, content::text AS content FROM (${source.sql}) m`,
    );
    const members: Member[] = [];
    for (;;) {
      const batch = await tx.query<{ id: string; version: string; content: string }>(
        'FETCH 50000 FROM members',
      );
      for (const row of batch.rows) {
        members.push({ id: row.id, version: Number(row.version), content: BigInt(row.content) });
      }
      if (batch.rows.length < 50_000) return members;
    }
  });
}

function report(
  rows: number,
  injected: number,
  runs: readonly Measured[],
  baselines: readonly Measured[],
  levels: readonly LevelReport[],
  loadSeconds: number,
  flags: BenchFlags,
  settings: Record<string, string>,
): void {
  const pick = (list: readonly Measured[]) => {
    const seconds = median(list.map((m) => m.seconds));
    const chosen = list.find((m) => m.seconds === seconds) as Measured;
    return chosen;
  };
  const r = pick(runs);
  const b = pick(baselines);
  heading('levels of the last run (bits, buckets compared, differing, listed)');
  table([
    ['bits', 'compared', 'differing', 'listed'],
    ...levels.map((l) => [l.bits, l.compared, l.differing, l.listed]),
  ]);
  heading(`results (median of ${runs.length} run${runs.length === 1 ? '' : 's'} each)`);
  table([
    ['method', 'found/injected', 'unexpected', 'seconds', 'bytes with owner', 'round trips'],
    [
      'checksum bisection (HTTP)',
      `${r.found}/${injected}`,
      r.unexpected,
      round(r.seconds, 3),
      r.bytes,
      r.calls,
    ],
    [
      'naive stream + diff',
      `${b.found}/${injected}`,
      b.unexpected,
      round(b.seconds, 3),
      b.bytes,
      '1 stream',
    ],
  ]);
  const bytesRatio = b.bytes / r.bytes;
  const timeRatio = b.seconds / r.seconds;
  say();
  say(
    `bytes: checksum bisection uses 1/${round(bytesRatio, 1)} of the naive stream (${round(r.bytes / 1024, 1)} KiB vs ${round(b.bytes / 2 ** 20, 1)} MiB)`,
  );
  say(`time:  naive / checksum bisection = ${round(timeRatio, 2)}`);
  say(
    `all runs (s): bisection ${runs.map((m) => round(m.seconds, 3)).join(', ')}; naive ${baselines.map((m) => round(m.seconds, 3)).join(', ')}`,
  );
  if (flags.json) {
    process.stdout.write(
      `${JSON.stringify({
        benchmark: 'reconcile',
        quick: flags.quick,
        rows,
        injected,
        loadSeconds: round(loadSeconds, 1),
        reconcile: {
          found: r.found,
          unexpected: r.unexpected,
          seconds: round(r.seconds, 3),
          bytes: r.bytes,
          roundTrips: r.calls,
          levels: levels.length,
          allSeconds: runs.map((m) => round(m.seconds, 3)),
        },
        baseline: {
          found: b.found,
          unexpected: b.unexpected,
          seconds: round(b.seconds, 3),
          bytes: b.bytes,
          allSeconds: baselines.map((m) => round(m.seconds, 3)),
        },
        ratios: { bytes: round(bytesRatio, 1), time: round(timeRatio, 2) },
        postgres: settings,
        machine: machine(),
      })}\n`,
    );
  }
}

async function readSettings(url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const names = [
      'server_version',
      'shared_buffers',
      'work_mem',
      'max_parallel_workers_per_gather',
      'fsync',
    ];
    const r = await client.query<{ name: string; setting: string }>(
      'SELECT name, current_setting(name) AS setting FROM unnest($1::text[]) AS name',
      [names],
    );
    return Object.fromEntries(r.rows.map((row) => [row.name, row.setting]));
  } finally {
    await client.end();
  }
}
