/**
 * Two services, two databases, one HTTP feed — the smallest complete Baton.
 *
 *   customers (owns customers)  ──HTTP feed──►  orders (keeps a copy of customer names)
 *
 * The customers service writes a customer and its event in ONE transaction
 * (outbox). Its relay numbers committed events in commit order and its feed
 * serves them, signed with HMAC. The orders service pulls the feed, stores
 * each event in its inbox together with its cursor, and runs the handler in
 * the same transaction as the "handled" mark: exactly once in effect, in
 * per-customer order. A handler that keeps failing parks its event as a dead
 * letter; other customers keep flowing.
 *
 * Run: npm run demo
 */
import { z } from 'zod';
import {
  type BatonEvent,
  createBaton,
  httpFeedSource,
  serveHttp,
  TerminalError,
} from '../../src/index.ts';
import { PgDatabase, startEmbeddedPostgres } from '../../src/pg.ts';

const SECRET = 'demo-shared-secret-change-me';
const say = (line: string) => console.log(line);

const CustomerEvent = z.object({ id: z.string(), name: z.string().min(1) });
type CustomerPayload = z.infer<typeof CustomerEvent>;

async function main(): Promise<void> {
  say('▶ starting an embedded PostgreSQL (real server from npm) with two databases');
  const pg = await startEmbeddedPostgres();
  const customersDb = new PgDatabase({ connectionString: await pg.createDatabase('customers') });
  const ordersDb = new PgDatabase({ connectionString: await pg.createDatabase('orders') });

  // ── customers service ──────────────────────────────────────────────
  const customers = createBaton({
    db: customersDb,
    service: 'customers',
    events: { 'customer.registered': CustomerEvent, 'customer.renamed': CustomerEvent },
  });
  await customers.migrate();
  await customersDb.query('CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL)');
  const relay = customers.relay({ pollIntervalMs: 100 });
  const feed = customers.feedHandler({ auth: { type: 'hmac', secrets: [SECRET] } });
  const server = await serveHttp((req, signal) => feed.handle(req, signal));
  say(`▶ customers serves its feed at ${server.url}/baton/events (HMAC-signed requests only)`);

  // ── orders service ─────────────────────────────────────────────────
  const orders = createBaton({ db: ordersDb, service: 'orders' });
  await orders.migrate();
  await ordersDb.query(
    'CREATE TABLE customer_names (id text PRIMARY KEY, name text NOT NULL, version int NOT NULL)',
  );
  const consumer = orders.consumer({
    name: 'orders-from-customers',
    source: httpFeedSource({
      name: 'customers',
      url: `${server.url}/baton`,
      auth: { type: 'hmac', secret: SECRET },
    }),
    fetchWaitMs: 1000,
    maxAttempts: 3,
    backoff: { baseMs: 50, maxMs: 200 },
  });
  const applyName = async (
    event: BatonEvent<CustomerPayload>,
    tx: Parameters<Parameters<typeof consumer.subscribe>[1]>[1],
  ) => {
    if (event.payload.name === 'Mallory')
      throw new TerminalError('orders refuses customers named Mallory');
    // A state event: apply only if newer (duplicates and stale versions change nothing).
    if (!(await orders.acceptIfNewer(tx, 'customer', event))) return;
    await tx.query(
      `INSERT INTO customer_names (id, name, version) VALUES ($1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET name = excluded.name, version = excluded.version`,
      [event.payload.id, event.payload.name, event.version],
    );
  };
  consumer.subscribe(['customer.registered', 'customer.renamed'], applyName, {
    schema: CustomerEvent,
  });

  await relay.start();
  await consumer.start();

  // ── the story ──────────────────────────────────────────────────────
  const people = ['Ada', 'Grace', 'Edsger', 'Barbara', 'Mallory', 'Donald'];
  say(
    `▶ customers registers ${people.length} customers, each row and its event in one transaction`,
  );
  for (const [i, name] of people.entries()) {
    const id = `cust-${i + 1}`;
    await customersDb.transaction(async (tx) => {
      await tx.query('INSERT INTO customers (id, name) VALUES ($1, $2)', [id, name]);
      await customers.publish(tx, { type: 'customer.registered', key: id, payload: { id, name } });
    });
  }
  say('▶ a transaction that publishes and then rolls back: its event must never arrive');
  await customersDb
    .transaction(async (tx) => {
      await customers.publish(tx, {
        type: 'customer.registered',
        key: 'cust-ghost',
        payload: { id: 'cust-ghost', name: 'Ghost' },
      });
      throw new Error('business rule failed');
    })
    .catch(() => {});
  say('▶ Ada is renamed three times in a row (per-key order must hold)');
  for (const name of ['Ada L.', 'Ada Lovelace', 'Countess Ada']) {
    await customersDb.transaction(async (tx) => {
      await tx.query("UPDATE customers SET name = $1 WHERE id = 'cust-1'", [name]);
      await customers.publish(tx, {
        type: 'customer.renamed',
        key: 'cust-1',
        payload: { id: 'cust-1', name },
      });
    });
  }
  say('▶ publishing an event that fails its schema is refused before anything is written:');
  await customersDb
    .transaction((tx) =>
      customers.publish(tx, {
        type: 'customer.renamed',
        key: 'cust-2',
        payload: { id: 'cust-2', name: '' },
      }),
    )
    .catch((error: Error) => say(`  ✓ refused: ${error.message}`));

  await waitFor(async () => {
    const r = await ordersDb.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM baton.inbox WHERE status IN ('handled', 'dead')`,
    );
    return r.rows[0]?.n === people.length + 3;
  });

  const replica = await ordersDb.query<{ id: string; name: string; version: number }>(
    'SELECT id, name, version FROM customer_names ORDER BY id',
  );
  say('▶ orders now knows these customers:');
  for (const row of replica.rows) say(`  ${row.id}  ${row.name.padEnd(14)} v${row.version}`);
  const dead = await ordersDb.query<{ key: string; last_error: string }>(
    `SELECT key, last_error FROM baton.inbox WHERE status = 'dead'`,
  );
  for (const d of dead.rows)
    say(`  ✗ dead letter for ${d.key}: ${d.last_error}  (see: baton dlq list)`);

  // ── checks ─────────────────────────────────────────────────────────
  const checks: [string, boolean][] = [];
  const names = new Map(replica.rows.map((r) => [r.id, r.name]));
  checks.push([
    'every registered customer but the refused one arrived',
    replica.rows.length === people.length - 1,
  ]);
  checks.push(['the rolled-back event never arrived', !names.has('cust-ghost')]);
  checks.push([
    "Ada's renames applied in order (last one wins)",
    names.get('cust-1') === 'Countess Ada',
  ]);
  checks.push([
    'the failing event is a dead letter, not lost',
    dead.rows.length === 1 && dead.rows[0]?.key === 'cust-5',
  ]);
  const dup = await ordersDb.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT event_id FROM baton.inbox GROUP BY event_id HAVING count(*) > 1) t`,
  );
  checks.push(['no event was recorded twice', dup.rows[0]?.n === 0]);

  await consumer.stop();
  await relay.stop();
  await feed.close();
  await server.close();
  await customersDb.close();
  await ordersDb.close();
  await pg.stop();

  say('▶ checks:');
  for (const [name, ok] of checks) say(`  ${ok ? '✓' : '✗'} ${name}`);
  const failed = checks.filter(([, ok]) => !ok).length;
  say(failed === 0 ? 'all checks passed' : `${failed} check(s) FAILED`);
  process.exitCode = failed === 0 ? 0 : 1;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`the demo did not settle within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

main().catch((error) => {
  console.error('demo failed:', error);
  process.exitCode = 1;
});
