import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Consumer,
  createBaton,
  httpFeedSource,
  readStatus,
  TerminalError,
} from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase, SECRET } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/*
 * Head-of-line blocking across keys: a few keys are poisoned — their handler
 * throws a TerminalError (a dead letter that blocks its key) or keeps failing
 * (a head waiting for its next retry) — and each gets more events behind its
 * head than the consumer's `maxPendingEntries`. Those entries can never run
 * until an operator acts, so they must not hold back the other keys: every
 * event of every healthy key is handled within a bound, also the ones
 * published after the poisoned backlog built up, and the poisoned keys'
 * events wait in the inbox, unhandled, in order, untried behind their head.
 *
 * A real producer (Baton relay + HTTP feed on loopback) and a real consumer,
 * each on a fresh database per run.
 */

type Poison = 'terminal' | 'failing';

interface Scenario {
  /** Events per healthy key h0, h1, … published in the first phase. */
  healthy: number[];
  /** Poisoned keys p0, p1, …: how they fail, and how many events beyond the limit wait behind their head. */
  poisoned: { kind: Poison; extra: number }[];
  maxPendingEntries: number;
  batchSize: number;
  handleOnIngest: boolean;
  /** Keys of the first phase, in publish order. */
  early: string[];
  /** Healthy events published once the poisoned backlog is in the inbox (keys). */
  late: string[];
}

/** Bound on handling every healthy event of a phase (generous: a working consumer takes well under a second). */
const BOUND_MS = 10_000;

const scenario: fc.Arbitrary<Scenario> = fc
  .record({
    healthy: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 }),
    poisoned: fc.array(
      fc.record({
        kind: fc.constantFrom<Poison>('terminal', 'failing'),
        extra: fc.integer({ min: 1, max: 3 }),
      }),
      { minLength: 1, maxLength: 3 },
    ),
    maxPendingEntries: fc.integer({ min: 1, max: 4 }),
    batchSize: fc.integer({ min: 1, max: 5 }),
    handleOnIngest: fc.boolean(),
    lateCount: fc.integer({ min: 1, max: 4 }),
  })
  .chain((s) => {
    const keys = [
      ...s.healthy.flatMap((n, i) => Array<string>(n).fill(`h${i}`)),
      // the head, then at least maxPendingEntries + 1 entries behind it
      ...s.poisoned.flatMap((p, i) =>
        Array<string>(s.maxPendingEntries + 1 + p.extra).fill(`p${i}`),
      ),
    ];
    const late = Array.from({ length: s.lateCount }, (_, i) => `h${i % s.healthy.length}`);
    return fc
      .shuffledSubarray(keys, { minLength: keys.length, maxLength: keys.length })
      .map((early) => ({ ...s, early, late }));
  });

interface Run {
  producer: TestService;
  consumerDb: TestDatabase;
  consumer: Consumer;
}

async function setUp(s: Scenario): Promise<Run> {
  const producer = await startService('holb_producer');
  const consumerDb = await freshDatabase('holb_consumer');
  await consumerDb.db.query(
    `CREATE TABLE handled (n bigserial, key text NOT NULL, version bigint NOT NULL,
       PRIMARY KEY (key, version))`,
  );
  const poison = new Map(s.poisoned.map((p, i) => [`p${i}`, p.kind]));
  const consumer = createBaton({ db: consumerDb.db, service: 'holb' })
    .consumer({
      name: 'holb-from-producer',
      source: httpFeedSource({
        name: producer.name,
        url: `${producer.server.url}/baton`,
        auth: { type: 'hmac', secret: SECRET },
      }),
      fetchWaitMs: 200,
      batchSize: s.batchSize,
      maxPendingEntries: s.maxPendingEntries,
      handleOnIngest: s.handleOnIngest,
      // a failing key never runs out of attempts during the run
      maxAttempts: 1_000,
      backoff: { baseMs: 20, maxMs: 100 },
    })
    .subscribe('item.changed', async (event, tx) => {
      const kind = poison.get(event.key);
      if (kind === 'terminal') throw new TerminalError(`${event.key} can never be handled`);
      if (kind === 'failing') throw new Error(`${event.key} keeps failing`);
      await tx.query('INSERT INTO handled (key, version) VALUES ($1, $2)', [
        event.key,
        event.version,
      ]);
    });
  return { producer, consumerDb, consumer };
}

async function publish(producer: TestService, keys: readonly string[]): Promise<void> {
  for (const key of keys) {
    await producer.database.db.transaction((tx) =>
      producer.baton.publish(tx, { type: 'item.changed', key, payload: {} }),
    );
  }
}

/** Versions handled per key, in the order they were handled. */
async function handledVersions(db: TestDatabase): Promise<Map<string, number[]>> {
  const r = await db.db.query<{ key: string; version: string }>(
    'SELECT key, version FROM handled ORDER BY n',
  );
  const byKey = new Map<string, number[]>();
  for (const row of r.rows)
    byKey.set(row.key, [...(byKey.get(row.key) ?? []), Number(row.version)]);
  return byKey;
}

interface InboxRow {
  key: string;
  version: string;
  status: string;
  attempts: number;
}

async function poisonedInbox(db: TestDatabase): Promise<Map<string, InboxRow[]>> {
  const r = await db.db.query<InboxRow>(
    `SELECT key, version::text, status, attempts FROM baton.inbox WHERE key LIKE 'p%' ORDER BY id`,
  );
  const byKey = new Map<string, InboxRow[]>();
  for (const row of r.rows) byKey.set(row.key, [...(byKey.get(row.key) ?? []), row]);
  return byKey;
}

function count(keys: readonly string[]): Map<string, number> {
  const n = new Map<string, number>();
  for (const k of keys) n.set(k, (n.get(k) ?? 0) + 1);
  return n;
}

/** What is still missing: healthy events not handled, poisoned events not waiting as they should. */
async function missing(run: Run, s: Scenario, published: readonly string[]): Promise<string[]> {
  const problems: string[] = [];
  const handled = await handledVersions(run.consumerDb);
  for (const [key, n] of count(published.filter((k) => k.startsWith('h')))) {
    const got = handled.get(key) ?? [];
    if (got.length < n) problems.push(`${key}: ${got.length} of ${n} events handled`);
  }
  const inbox = await poisonedInbox(run.consumerDb);
  for (const [key, n] of count(published.filter((k) => k.startsWith('p')))) {
    const rows = inbox.get(key) ?? [];
    if (rows.length < n) problems.push(`${key}: ${rows.length} of ${n} events in the inbox`);
    const kind = s.poisoned[Number(key.slice(1))]?.kind;
    const head = rows[0];
    const blocked = kind === 'terminal' ? head?.status === 'dead' : (head?.attempts ?? 0) > 0;
    if (!blocked) problems.push(`${key}: its head has not failed yet`);
  }
  return problems;
}

/** Polls `problems` until it returns none, or throws with what is still missing after the bound. */
async function within(what: string, problems: () => Promise<string[]>): Promise<void> {
  const deadline = Date.now() + BOUND_MS;
  let left = await problems();
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    left = await problems();
  }
  if (left.length > 0) throw new Error(`${what}: not within ${BOUND_MS} ms — ${left.join('; ')}`);
}

/** The precondition of the hole: more entries wait behind failed poisoned heads than maxPendingEntries. */
async function backlogBuilt(run: Run, s: Scenario): Promise<string[]> {
  const inbox = await poisonedInbox(run.consumerDb);
  let behind = 0;
  for (const rows of inbox.values()) {
    const head = rows[0];
    if (head && (head.status === 'dead' || head.attempts > 0)) behind += rows.length - 1;
  }
  return behind >= s.maxPendingEntries
    ? []
    : [`${behind} entries wait behind failed poisoned heads (want ${s.maxPendingEntries})`];
}

async function check(s: Scenario): Promise<void> {
  const run = await setUp(s);
  try {
    await publish(run.producer, s.early);
    await run.consumer.start();
    await within('poisoned backlog built', () => backlogBuilt(run, s));
    // The poisoned backlog now fills the inbox past maxPendingEntries: everything else must still flow.
    await publish(run.producer, s.late);
    const all = [...s.early, ...s.late];
    await within('every healthy event handled', () => missing(run, s, all));

    // Healthy keys: every event once, in version order.
    const handled = await handledVersions(run.consumerDb);
    for (const [key, n] of count(all.filter((k) => k.startsWith('h')))) {
      expect(handled.get(key), key).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    }
    // Poisoned keys: nothing handled; in the inbox in order, the head blocked, the rest never tried.
    const inbox = await poisonedInbox(run.consumerDb);
    for (const [key, n] of count(all.filter((k) => k.startsWith('p')))) {
      expect(handled.has(key), `${key} handled`).toBe(false);
      const rows = inbox.get(key) ?? [];
      expect(
        rows.map((r) => Number(r.version)),
        key,
      ).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      const kind = s.poisoned[Number(key.slice(1))]?.kind;
      expect(rows[0]?.status, `${key} head`).toBe(kind === 'terminal' ? 'dead' : 'pending');
      for (const behind of rows.slice(1)) {
        expect(behind, `${key} v${behind.version}`).toMatchObject({
          status: 'pending',
          attempts: 0,
        });
      }
    }
    // The operator sees the backlog: every poisoned key blocked, and what waits behind it.
    const [status] = (await readStatus(run.consumerDb.db)).subscriptions;
    const poisoned = [...count(all.filter((k) => k.startsWith('p'))).values()];
    expect(status).toMatchObject({
      blockedKeys: poisoned.length,
      blockedEntries: poisoned.reduce((sum, n) => sum + n - 1, 0),
    });
  } finally {
    await run.consumer.stop();
    await run.producer.stop();
    await run.consumerDb.drop();
  }
}

describe('head-of-line blocking across keys', () => {
  it('healthy keys keep flowing past poisoned keys whose backlog exceeds maxPendingEntries', async () => {
    await fc.assert(fc.asyncProperty(scenario, check), {
      numRuns: 12,
      // A failing run waits out its bound; stop shrinking in time to report it.
      interruptAfterTimeLimit: 60_000,
    });
  }, 120_000);
});
