import type { Database, Executor, QueryResult } from '../../src/db/executor.ts';
import type { ReservationClient } from '../../src/sagas/participant-client.ts';

/**
 * Where the orchestrator's time goes: a `Database` wrapper that times every
 * statement (by kind, recognised from its text) and every transaction, and a
 * `ReservationClient` wrapper that times the HTTP calls. Used only by the
 * profile pass (the figures of the main pass are taken without it).
 */
export interface Tally {
  count: number;
  ms: number;
  /** Statements that changed or returned no row (e.g. a claim that found nothing). */
  empty: number;
}

export class Profile {
  readonly statements = new Map<string, Tally>();
  readonly transactions: Tally = { count: 0, ms: 0, empty: 0 };
  readonly http = new Map<string, Tally>();

  add(map: Map<string, Tally>, key: string, ms: number, empty: boolean): void {
    const t = map.get(key) ?? { count: 0, ms: 0, empty: 0 };
    t.count++;
    t.ms += ms;
    if (empty) t.empty++;
    map.set(key, t);
  }
}

/** Statement kinds of the saga store, the business SQL and the transaction frame. */
const KINDS: [string, RegExp][] = [
  ['claim (UPDATE … lease, SKIP LOCKED)', /SET lease_owner = \$1/],
  ['start (INSERT sagas)', /INSERT INTO \S+\.sagas/],
  ['fence check (SELECT … FOR UPDATE)', /WHERE id = \$1 AND fence = \$2 FOR UPDATE/],
  ['lease renew', /SET lease_until = now\(\)/],
  ['read steps', /FROM \S+\.saga_steps WHERE saga_id = \$1$/m],
  ['record step (upsert)', /INSERT INTO \S+\.saga_steps/],
  ['mark confirmed/compensated', /UPDATE \S+\.saga_steps SET state = \$3/],
  ['set saga state', /UPDATE \S+\.sagas SET state = \$2/],
  ['suspend', /SET\s+wake_at = CASE/],
  ['business: insert order', /INSERT INTO orders/],
  ['BEGIN', /^BEGIN/],
  ['COMMIT', /^COMMIT/],
  ['completion watcher (bench)', /state IN \('completed'/],
];

function kindOf(text: string): string {
  for (const [kind, re] of KINDS) if (re.test(text)) return kind;
  return `other: ${text.replace(/\s+/g, ' ').slice(0, 50)}`;
}

function timed(profile: Profile, target: Executor): Executor {
  return {
    async query<R>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
      const t0 = performance.now();
      const r = await target.query<R>(text, values);
      // A multi-statement text (migrations) answers an array of results: never "empty".
      const empty = !Array.isArray(r) && (r.rowCount ?? r.rows?.length ?? 1) === 0;
      profile.add(profile.statements, kindOf(text), performance.now() - t0, empty);
      return r;
    },
  };
}

export function profiledDatabase(profile: Profile, db: Database): Database {
  const plain = timed(profile, db);
  return {
    query: plain.query,
    async transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T> {
      const t0 = performance.now();
      let failed = false;
      try {
        // BEGIN and COMMIT go through the pool client, not through `tx`: their
        // time is the transaction's time minus its statements.
        return await db.transaction((tx) => fn(timed(profile, tx)));
      } catch (error) {
        failed = true;
        throw error;
      } finally {
        profile.transactions.count++;
        profile.transactions.ms += performance.now() - t0;
        if (failed) profile.transactions.empty++;
      }
    },
    listen: (channel, onNotify) => db.listen(channel, onNotify),
    close: () => db.close(),
  };
}

export function profiledClient(profile: Profile, client: ReservationClient): ReservationClient {
  return {
    async reserve(op, resource, call) {
      const t0 = performance.now();
      try {
        return await client.reserve(op, resource, call);
      } finally {
        profile.add(profile.http, `HTTP ${op}`, performance.now() - t0, false);
      }
    },
  };
}
