/**
 * The chaos checker can fail. A clean workload through the shop's HTTP APIs
 * (three real service processes, their own databases) passes every check;
 * then each anomaly is written into a copy of the databases by plain SQL —
 * a duplicated effect, a lost event, a reordered event, an orphan, a ledger
 * that does not add up, a saga left running, a reservation left in try, a
 * replica moved back in time, a dead letter that blocks more than its key, …
 * — and the checker must report it under the right check, and only there
 * (where an anomaly is by nature two, both are named and the reason given).
 */
import { once } from 'node:events';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckResult, CheckShopInput } from '../examples/shop/chaos/checker.ts';
import { type CheckerReport, checkShop, formatReport } from '../examples/shop/chaos/checker.ts';
import { deadLetterBlocksOnlyItsKey } from '../examples/shop/chaos/checks/dead-letter-flow.ts';
import { observeFlow } from '../examples/shop/chaos/flow-probe.ts';
import {
  type HistoryEntry,
  outcomeOf,
  outcomeOfAttempts,
  readHistory,
  writeHistory,
} from '../examples/shop/chaos/history.ts';
import { installReplicaAudit } from '../examples/shop/chaos/replica-audit.ts';
import {
  type RunningShop,
  SERVICES,
  type ServiceName,
  startShop,
} from '../examples/shop/launcher.ts';
import { request } from '../examples/shop/shop-client.ts';
import { uuidv7 } from '../src/index.ts';
import { eventually } from './helpers.ts';

type Op = HistoryEntry['op'];

async function sql(url: string, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

async function count(url: string, text: string): Promise<number> {
  return Number((await sql(url, text)).rows[0]?.n ?? 0);
}

function failing(report: CheckerReport): string[] {
  return report.checks
    .filter((c) => !c.passed)
    .map((c) => c.name)
    .sort();
}

function kinds(report: CheckerReport, check: string): string[] {
  return kindsOf(report.checks.find((c) => c.name === check));
}

function kindsOf(check: CheckResult | undefined): string[] {
  const examples = check?.examples ?? [];
  return [...new Set(examples.map((e) => (e as { kind: string }).kind))].sort();
}

describe('chaos checker', () => {
  let shop: RunningShop;
  const history: HistoryEntry[] = [];
  let input: CheckShopInput;
  let live: CheckerReport;
  const metrics: Record<string, { status: number; text: string }> = {};
  const refusedScrape: Record<string, number> = {};

  /** Sends one command and records it with its outcome, as the chaos workload does. */
  async function command(
    op: Op,
    args: Record<string, unknown>,
    service: ServiceName,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<HistoryEntry> {
    const startedAt = Date.now();
    let status: number | undefined;
    let answer: unknown;
    try {
      const r = await request(shop.urls[service], method, path, body);
      status = r.status;
      answer = r.body;
    } catch {
      status = undefined; // no answer: the outcome is unknown
    }
    const entry: HistoryEntry = {
      seq: history.length + 1,
      op,
      args,
      outcome: outcomeOf(status),
      status,
      body: answer,
      startedAt,
      endedAt: Date.now(),
    };
    history.push(entry);
    return entry;
  }

  const register = (id: string, name = `Customer ${id}`) =>
    command('register', { id, name, address: `${id} Street` }, 'customers', 'POST', '/customers', {
      id,
      name,
      address: `${id} Street`,
    });
  const place = (id: string, customerId: string, points: number) =>
    command('place', { id, customerId, points }, 'orders', 'POST', '/orders', {
      id,
      customerId,
      points,
    });
  const cancel = (orderId: string) =>
    command('cancel', { orderId }, 'orders', 'POST', `/orders/${orderId}/cancel`);
  const remove = (id: string) =>
    command('delete', { id }, 'customers', 'DELETE', `/customers/${id}`);
  const update = (id: string, address: string, updateId = uuidv7()) =>
    command('update', { id, address, updateId }, 'customers', 'PATCH', `/customers/${id}`, {
      address,
      updateId,
    });

  const db = () => shop.databaseUrls;
  const openSagas = () =>
    count(
      db().orders,
      "SELECT count(*) AS n FROM baton.sagas WHERE state NOT IN ('completed', 'compensated')",
    );

  /** Quiet: no saga open, every outbox row relayed, every inbox entry handled, every feed read to its end. */
  async function quiet(): Promise<boolean> {
    if ((await openSagas()) > 0) return false;
    for (const service of SERVICES) {
      const url = db()[service];
      if ((await count(url, 'SELECT count(*) AS n FROM baton.outbox WHERE seq IS NULL')) > 0)
        return false;
      if ((await count(url, "SELECT count(*) AS n FROM baton.inbox WHERE status = 'pending'")) > 0)
        return false;
    }
    const lastSeq = await count(db().customers, 'SELECT last_seq AS n FROM baton.relay_state');
    for (const service of ['orders', 'loyalty'] as const) {
      const behind = await count(
        db()[service],
        `SELECT count(*) AS n FROM baton.subscriptions WHERE coalesce(cursor, '0')::bigint < ${lastSeq}`,
      );
      if (behind > 0) return false;
    }
    return true;
  }

  beforeAll(async () => {
    shop = await startShop();
    // As the chaos harness does: every write Baton makes to a replica row is audited.
    await installReplicaAudit(shop.databaseUrls);
    // A small clean workload: register 6 (and one refused), place 8 (one
    // refused by loyalty: too many points), cancel 2, update 1, delete 2.
    const customers = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6'];
    for (const id of customers) expect((await register(id)).outcome).toBe('ok');
    expect(
      (
        await command('register', { id: 'c-bad' }, 'customers', 'POST', '/customers', {
          id: 'c-bad',
        })
      ).outcome,
    ).toBe('fail');
    await eventually(
      async () =>
        (await count(db().loyalty, 'SELECT count(*) AS n FROM accounts')) === customers.length,
      'six loyalty accounts',
    );
    const orders: [string, string, number][] = [
      ['o1', 'c1', 30],
      ['o2', 'c2', 20],
      ['o3', 'c3', 0],
      ['o4', 'c4', 40],
      ['o5', 'c5', 10],
      ['o6', 'c6', 25],
      ['o7', 'c1', 15],
      ['o8', 'c2', 500],
    ];
    for (const [id, customerId, points] of orders)
      expect((await place(id, customerId, points)).outcome).toBe('ok');
    await eventually(async () => (await openSagas()) === 0, 'every place-order saga ended', 30_000);
    expect((await cancel('o1')).outcome).toBe('ok');
    expect((await cancel('o2')).outcome).toBe('ok');
    expect((await cancel('o-none')).outcome).toBe('fail');
    const older = uuidv7();
    expect((await update('c3', '3 New Street')).outcome).toBe('ok');
    // The network delivers an older update of c3 late, after the acknowledged one:
    // the newer update id wins, the replay changes nothing.
    const late = await request(shop.urls.customers, 'PATCH', '/customers/c3', {
      address: '3 Old Street',
      updateId: older,
    });
    expect([late.status, late.body]).toEqual([200, { id: 'c3', applied: false }]);
    await eventually(
      async () => (await openSagas()) === 0,
      'both cancel-order sagas ended',
      30_000,
    );
    expect((await remove('c5')).outcome).toBe('ok');
    expect((await remove('c6')).outcome).toBe('ok');
    // The network delivers c5's registration again after the delete (a late replay,
    // outside the client's history): the id is its idempotency key, nothing comes back.
    const replayed = await request(shop.urls.customers, 'POST', '/customers', {
      id: 'c5',
      name: 'Customer c5',
      address: 'c5 Street',
    });
    expect([replayed.status, replayed.body]).toEqual([200, { id: 'c5', created: false }]);
    await eventually(
      async () =>
        (await count(
          db().loyalty,
          "SELECT count(*) AS n FROM accounts WHERE customer_id IN ('c5', 'c6')",
        )) === 0,
      'loyalty cascaded the two deletes',
    );
    await eventually(quiet, 'the shop to be quiet', 30_000);
    input = { databaseUrls: shop.databaseUrls, history, badInput: { sent: 0, unexpected5xx: 0 } };
    live = await checkShop(input);
    // Each service's metrics, scraped with the operator's token (and refused without it).
    for (const name of SERVICES) {
      const url = `${shop.urls[name]}/ops/metrics`;
      const scraped = await fetch(url, { headers: { authorization: `Bearer ${shop.adminToken}` } });
      metrics[name] = { status: scraped.status, text: await scraped.text() };
      refusedScrape[name] = (await fetch(url)).status;
    }

    // From here on the databases stand still: the anomalies are written into copies of them.
    for (const name of SERVICES) {
      const child = shop.process(name);
      if (!child || child.exitCode !== null || child.signalCode !== null) continue;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
    // A copy needs its template database without sessions; the services' ones end just after them.
    await eventually(
      async () =>
        (await count(
          shop.clusters[0]!.url(),
          "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'shop-%'",
        )) === 0,
      'the services’ database sessions to end',
    );
  });

  afterAll(async () => {
    await shop?.stop();
  });

  it("serves each service's metrics to the operator's token only, with what the workload did", () => {
    for (const name of SERVICES) {
      expect(metrics[name]?.status, name).toBe(200);
      expect(refusedScrape[name], name).toBe(401);
      expect(metrics[name]?.text).toContain(`baton_outbox_backlog_events{service="${name}"}`);
    }
    expect(metrics.orders?.text).toMatch(/baton_sagas\{state="completed",service="orders"\} [1-9]/);
    expect(metrics.customers?.text).toMatch(
      /baton_relay_events_total\{service="customers"\} [1-9]/,
    );
  });

  it('passes every check on a clean run, live and after the services stopped', async () => {
    expect(failing(live), formatReport(live)).toEqual([]);
    expect(live.passed).toBe(13);
    expect(live.stats['replicaAudit.orders.updates']).toBeGreaterThan(0); // c3's update, c5's and c6's deletes
    expect(live.stats['history.register.succeeded']).toBe(6);
    expect(live.stats['history.place.succeeded']).toBe(7); // o8 was rejected
    expect(live.stats['history.cancel.succeeded']).toBe(2);
    expect(live.stats['sagas.place-order.compensated']).toBe(1);
    expect(live.stats['balances.modelCompared']).toBe(4); // c1–c4; c5 and c6 are deleted
    expect(live.stats['events.compared']).toBeGreaterThan(0);

    const stopped = await checkShop(input);
    expect(failing(stopped), formatReport(stopped)).toEqual([]);
  });

  let copies = 0;
  /**
   * Copies one database (CREATE DATABASE … TEMPLATE), corrupts the copy with
   * `corrupt`, hands the copy's URL to `use`, drops the copy.
   */
  async function withCorruptedCopy<T>(
    database: ServiceName,
    corrupt: (client: pg.Client) => Promise<unknown>,
    use: (url: string) => Promise<T>,
  ): Promise<T> {
    const cluster = shop.clusters[0]!;
    const copy = `${database}_anomaly_${++copies}`;
    await sql(cluster.url(), `CREATE DATABASE ${copy} TEMPLATE ${database}`);
    try {
      const client = new pg.Client({ connectionString: cluster.url(copy) });
      await client.connect();
      try {
        await corrupt(client);
      } finally {
        await client.end();
      }
      return await use(cluster.url(copy));
    } finally {
      await sql(cluster.url(), `DROP DATABASE ${copy}`);
    }
  }

  /** Runs the checker with a corrupted copy of one database in its place. */
  function checkCorrupted(
    database: ServiceName,
    corrupt: (client: pg.Client) => Promise<unknown>,
    overrides: Partial<CheckShopInput> = {},
  ): Promise<CheckerReport> {
    return withCorruptedCopy(database, corrupt, (url) =>
      checkShop({
        ...input,
        ...overrides,
        databaseUrls: { ...input.databaseUrls, [database]: url },
      }),
    );
  }

  it('reports a duplicated delivery as a duplicate effect, and nothing else', async () => {
    const report = await checkCorrupted('loyalty', (c) =>
      c.query(`DROP INDEX baton.inbox_dedup;
        INSERT INTO baton.inbox (subscription, position, event_id, type, key, version, payload, headers,
                                 occurred_at, source, raw, status, attempts, handled_at)
        SELECT subscription, position, event_id, type, key, version, payload, headers,
               occurred_at, source, raw, status, attempts, handled_at
        FROM baton.inbox WHERE type = 'customer.registered' AND key = 'customer:c1'`),
    );
    expect(failing(report), formatReport(report)).toEqual(['no-duplicate-effects']);
    expect(kinds(report, 'no-duplicate-effects')).toEqual(['event-received-twice']);
  });

  it('reports a second spend for one order as a duplicate effect and a balance off the model', async () => {
    // The ledger is kept adding up (balance lowered with it): a double charge
    // still leaves the customer 40 points short of what the history allows.
    const report = await checkCorrupted('loyalty', (c) =>
      c.query(`ALTER TABLE movements DROP CONSTRAINT movements_reference_key;
        INSERT INTO movements (customer_id, points, kind, reference)
        SELECT customer_id, points, kind, reference FROM movements WHERE reference = 'spend:place:o4';
        UPDATE accounts SET balance = balance - 40 WHERE customer_id = 'c4'`),
    );
    expect(failing(report), formatReport(report)).toEqual([
      'balances-add-up',
      'no-duplicate-effects',
    ]);
    expect(kinds(report, 'no-duplicate-effects')).toEqual(['spend-booked-twice']);
    expect(kinds(report, 'balances-add-up')).toEqual(['balance-differs-from-model']);
  });

  it('reports an event missing from a subscriber’s inbox as lost, and nothing else', async () => {
    // c3's address change reached orders (its replica has it); the inbox row goes, nothing else moves.
    const report = await checkCorrupted('orders', (c) =>
      c.query(`DELETE FROM baton.inbox WHERE id = (
        SELECT max(id) FROM baton.inbox WHERE key = 'customer:c3')`),
    );
    expect(failing(report), formatReport(report)).toEqual(['no-lost-events']);
    expect(kinds(report, 'no-lost-events')).toEqual(['lost']);
  });

  it('reports two events of one key handled in the wrong order, and nothing else', async () => {
    const report = await checkCorrupted('loyalty', async (c) => {
      // Two state events of one customer (one version stream: baton.entity.customer).
      const rows = await c.query<{ id: string }>(
        `SELECT id FROM baton.inbox WHERE type = 'baton.entity.customer' AND key = (
           SELECT key FROM baton.inbox WHERE type = 'baton.entity.customer'
           GROUP BY key HAVING count(*) >= 2 ORDER BY key LIMIT 1)
         ORDER BY id LIMIT 2`,
      );
      const [a, b] = rows.rows.map((r) => Number(r.id));
      // Swap the two inbox ids: the later version now sits first.
      await c.query('UPDATE baton.inbox SET id = -id WHERE id = $1', [a]);
      await c.query('UPDATE baton.inbox SET id = $1 WHERE id = $2', [a, b]);
      await c.query('UPDATE baton.inbox SET id = $1 WHERE id = $2', [b, -a!]);
    });
    expect(failing(report), formatReport(report)).toEqual(['per-key-event-order']);
    expect(kinds(report, 'per-key-event-order')).toEqual(['out-of-order']);
  });

  it('reports an order pointing at a customer no replica knows (and without its saga)', async () => {
    // An orphan inserted behind Baton's back has no place saga either: the saga check names that half.
    const report = await checkCorrupted('orders', (c) =>
      c.query(`SET session_replication_role = replica;
        INSERT INTO orders (id, customer_id, points, state) VALUES ('o-orphan', 'ghost', 0, 'placed')`),
    );
    expect(failing(report), formatReport(report)).toEqual([
      'no-reference-to-missing-customer',
      'sagas-terminal-and-consistent',
    ]);
    expect(kinds(report, 'no-reference-to-missing-customer')).toEqual(['order-customer-unknown']);
    expect(kinds(report, 'sagas-terminal-and-consistent')).toEqual(['order-without-place-saga']);
  });

  it('reports a balance that is not the sum of its movements, and nothing else', async () => {
    const report = await checkCorrupted('loyalty', (c) =>
      c.query("UPDATE accounts SET balance = balance + 7 WHERE customer_id = 'c3'"),
    );
    expect(failing(report), formatReport(report)).toEqual(['balances-add-up']);
    expect(kinds(report, 'balances-add-up')).toEqual([
      'balance-differs-from-model',
      'balance-not-sum-of-movements',
    ]);
  });

  it('reports a ledger that adds up but not to what the history allows', async () => {
    const report = await checkCorrupted('loyalty', (c) =>
      c.query(`INSERT INTO movements (customer_id, points, kind, reference) VALUES ('c3', 50, 'refund', 'refund:o-gift');
        UPDATE accounts SET balance = balance + 50 WHERE customer_id = 'c3'`),
    );
    expect(failing(report), formatReport(report)).toEqual(['balances-add-up']);
    expect(kinds(report, 'balances-add-up')).toEqual(['balance-differs-from-model']);
  });

  it('reports a saga left running, and nothing else', async () => {
    const report = await checkCorrupted('orders', (c) =>
      c.query("UPDATE baton.sagas SET state = 'running', finished_at = NULL WHERE id = 'place:o4'"),
    );
    expect(failing(report), formatReport(report)).toEqual(['sagas-terminal-and-consistent']);
    expect(kinds(report, 'sagas-terminal-and-consistent')).toEqual(['saga-not-terminal']);
  });

  it('reports a reservation left in try (a hold, a barrier try alone), and nothing else', async () => {
    const report = await checkCorrupted('loyalty', (c) =>
      c.query(`INSERT INTO holds VALUES ('place:o-ghost', 'spend-points', 'c3', 5);
        INSERT INTO baton.barrier (tx_id, branch, op, resource, outcome)
        VALUES ('place:o-ghost', 'spend-points', 'try', 'points', 'done')`),
    );
    expect(failing(report), formatReport(report)).toEqual(['no-reservation-left-in-try']);
    expect(kinds(report, 'no-reservation-left-in-try')).toEqual([
      'hold-left',
      'try-without-confirm-or-cancel',
    ]);
  });

  it('reports an acknowledged registration that vanished (and the replicas that still hold it)', async () => {
    // Deleted with the triggers off: no event, no tombstone — the replicas now hold an orphan.
    const report = await checkCorrupted('customers', (c) =>
      c.query(`SET session_replication_role = replica; DELETE FROM customers WHERE id = 'c4'`),
    );
    expect(failing(report), formatReport(report)).toEqual([
      'acknowledged-commands-durable',
      'replicas-equal-owners',
    ]);
    expect(kinds(report, 'acknowledged-commands-durable')).toEqual(['acknowledged-register-lost']);
    expect(kinds(report, 'replicas-equal-owners')).toEqual(['replica-without-owner']);
  });

  it('reports a replica moved back in time and put forward again, and nothing else; hand edits with triggers off are not Baton’s writes', async () => {
    // Each pair of writes ends where it began: the final state is right, only the audit shows the way back.
    const report = await checkCorrupted('orders', (c) =>
      c.query(`UPDATE baton.replica_customer SET version = version - 1 WHERE id = 'c3';
        UPDATE baton.replica_customer SET version = version + 1 WHERE id = 'c3';
        UPDATE baton.replica_customer SET state = 'ACTIVE' WHERE id = 'c5';
        UPDATE baton.replica_customer SET state = 'DELETED' WHERE id = 'c5';
        SET session_replication_role = replica;
        UPDATE baton.replica_customer SET version = version - 1 WHERE id = 'c4';
        UPDATE baton.replica_customer SET version = version + 1 WHERE id = 'c4';`),
    );
    expect(failing(report), formatReport(report)).toEqual(['replicas-never-moved-back']);
    expect(kinds(report, 'replicas-never-moved-back')).toEqual([
      'came-back-to-life',
      'version-moved-back',
    ]);
    expect(report.checks.find((c) => c.name === 'replicas-never-moved-back')?.anomalies).toBe(2);
  });

  it('reports a dead letter that blocks more than its own key (subscription stalled, another key held), and passes one that blocks only its own', async () => {
    // c2 poisoned at loyalty: its first event a dead letter, the next one waiting behind it.
    const poison = `UPDATE baton.inbox SET status = 'dead', last_error = 'poison'
        WHERE id = (SELECT min(id) FROM baton.inbox WHERE key = 'customer:c2');
      UPDATE baton.inbox SET status = 'pending' WHERE key = 'customer:c2' AND status = 'handled';`;
    const observe = (poisonedKeys: string[]) => (url: string) =>
      observeFlow({
        producerUrl: db().customers,
        subscriberUrl: url,
        subscription: 'loyalty-from-customers',
        poisonedKeys,
        limit: 1,
        boundMs: 300,
      });
    const onlyItsKey = await withCorruptedCopy(
      'loyalty',
      (c) => c.query(poison),
      observe(['customer:c2']),
    );
    expect(deadLetterBlocksOnlyItsKey(onlyItsKey)).toMatchObject({ passed: true });
    const withFlow = await checkShop({ ...input, deadLetterFlow: onlyItsKey });
    expect(failing(withFlow), formatReport(withFlow)).toEqual([]);
    expect(withFlow.passed).toBe(14);

    // The consumer stopped reading the feed three events short, and c3's last event waits too.
    const spread = await withCorruptedCopy(
      'loyalty',
      (c) =>
        c.query(`${poison}
          UPDATE baton.subscriptions SET cursor = (cursor::bigint - 3)::text WHERE name = 'loyalty-from-customers';
          UPDATE baton.inbox SET status = 'pending' WHERE id = (SELECT max(id) FROM baton.inbox WHERE key = 'customer:c3');`),
      observe(['customer:c2']),
    );
    const stalled = deadLetterBlocksOnlyItsKey(spread);
    expect(stalled.passed).toBe(false);
    expect(kindsOf(stalled)).toEqual(['other-key-held', 'subscription-stalled']);

    // A set-up that did not hold (no dead letter, no backlog on the key named) proves nothing: reported.
    const vacuous = deadLetterBlocksOnlyItsKey(
      await withCorruptedCopy('loyalty', async () => {}, observe(['customer:c4'])),
    );
    expect(kindsOf(vacuous)).toEqual(['backlog-below-limit', 'poisoned-key-not-dead-lettered']);
    expect(kindsOf(deadLetterBlocksOnlyItsKey({ failed: 'no probe' }))).toEqual(['probe-failed']);
  });

  it('reports a real event turned dead letter as bad input not contained, and nothing else', async () => {
    const report = await checkCorrupted('loyalty', (c) =>
      c.query(`UPDATE baton.inbox SET status = 'dead', last_error = 'poison'
        WHERE id = (SELECT min(id) FROM baton.inbox WHERE key = 'customer:c2')`),
    );
    expect(failing(report), formatReport(report)).toEqual(['bad-input-contained']);
    expect(kinds(report, 'bad-input-contained')).toEqual(['real-event-dead']);
  });

  it('reports 5xx answers to bad input and a 5xx recorded as success', async () => {
    const tampered = history.map((e) => (e.seq === 1 ? { ...e, status: 500 } : e));
    const report = await checkShop({
      ...input,
      history: tampered,
      badInput: { sent: 10, unexpected5xx: 2 },
    });
    expect(failing(report), formatReport(report)).toEqual(['bad-input-contained']);
    expect(kinds(report, 'bad-input-contained')).toEqual([
      'bad-input-answered-5xx',
      'outcome-misclassified',
    ]);
  });

  it('fails a run where nothing succeeded, or too little did', async () => {
    const nothingAnswered = history.map((e) => ({
      ...e,
      outcome: 'unknown' as const,
      status: undefined,
    }));
    const allUnknown = await checkShop({ ...input, history: nothingAnswered });
    expect(failing(allUnknown), formatReport(allUnknown)).toEqual([
      'minimum-successful-operations',
    ]);
    const tooFew = await checkShop({ ...input, minimumOk: { cancel: 3 } });
    expect(failing(tooFew), formatReport(tooFew)).toEqual(['minimum-successful-operations']);
  });

  it('keeps the history as JSON lines: read back equal, a torn last line dropped, a bad line named', () => {
    const dir = mkdtempSync(join(tmpdir(), 'chaos-history-'));
    try {
      const file = join(dir, 'history.jsonl');
      writeHistory(file, history);
      appendFileSync(file, '{"seq": 99, "op": "pla');
      expect(readHistory(file)).toEqual(JSON.parse(JSON.stringify(history)));
      appendFileSync(file, '\n{"seq": 100}\n');
      expect(() => readHistory(file)).toThrow(/history.jsonl:\d+: not JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(outcomeOfAttempts([undefined, 404])).toBe('unknown');
    expect(outcomeOfAttempts([503, 202])).toBe('ok');
    expect(outcomeOfAttempts([400, 400])).toBe('fail');
  });
});
