/**
 * The shop's story, as the demo tells it (and the dashboard's browser test
 * replays it): customers register, orders are placed and cancelled, a
 * customer is deleted under each reference policy, and an operator repairs
 * what was broken behind Baton's back. Each step waits until the services
 * agree, and says what happened through `say`.
 */
import pg from 'pg';
import type { RunningShop } from './launcher.ts';
import { request, until } from './shop-client.ts';

async function sql(url: string, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

export async function story(shop: RunningShop, say: (line?: string) => void): Promise<void> {
  const step = (line: string) => say(`\n▶ ${line}`);
  const { urls, databaseUrls: db } = shop;
  const admin = { authorization: `Bearer ${shop.adminToken}` };
  const balance = async (id: string) =>
    (await request<{ balance?: number }>(urls.loyalty, 'GET', `/accounts/${id}`)).body.balance;
  const order = async (id: string) =>
    (await request<{ state?: string; customer_name?: string }>(urls.orders, 'GET', `/orders/${id}`))
      .body;

  step('customers register; loyalty opens an account with 100 welcome points for each');
  const people = [
    { id: 'ada', name: 'Ada Lovelace', address: '12 St James Square, London' },
    { id: 'grace', name: 'Grace Hopper', address: '1 Navy Way, Arlington' },
    { id: 'edsger', name: 'Edsger Dijkstra', address: 'Plataanstraat 5, Nuenen' },
  ];
  for (const p of people) {
    const r = await request(urls.customers, 'POST', '/customers', p);
    say(`  POST /customers ${p.id} → ${r.status}`);
  }
  await until(
    async () => (await Promise.all(people.map((p) => balance(p.id)))).every((b) => b === 100),
    'three loyalty accounts',
  );
  say('  loyalty: ada 100, grace 100, edsger 100 points');

  step(
    'orders spend points: each order is a saga — create the order, reserve points on loyalty (try), accept, confirm',
  );
  for (const [id, customerId, points] of [
    ['o-1', 'ada', 30],
    ['o-2', 'grace', 50],
  ] as const) {
    await request(urls.orders, 'POST', '/orders', { id, customerId, points });
    await until(async () => (await order(id)).state === 'placed', `order ${id} placed`);
    say(
      `  order ${id} for ${customerId}: placed, ${points} points spent → balance ${await balance(customerId)}`,
    );
  }

  step(
    'one order fails: edsger asks for 500 points — loyalty refuses the reservation, the saga compensates',
  );
  await request(urls.orders, 'POST', '/orders', { id: 'o-3', customerId: 'edsger', points: 500 });
  await until(async () => (await order('o-3')).state === 'rejected', 'order o-3 rejected');
  const saga = (await order('o-3')) as { saga?: { state: string; error: string } };
  say(`  order o-3: rejected; saga ${saga.saga?.state} (${saga.saga?.error})`);
  say(`  edsger still has ${await balance('edsger')} points; no hold is left behind`);

  step(
    'a placed order is cancelled: the cancel-order saga refunds the points (an idempotent action on loyalty)',
  );
  await request(urls.orders, 'POST', '/orders/o-2/cancel');
  await until(
    async () => (await order('o-2')).state === 'cancelled' && (await balance('grace')) === 100,
    'o-2 cancelled and refunded',
  );
  say(`  order o-2: cancelled; grace is back to ${await balance('grace')} points`);

  step(
    'ada is deleted (DELETE /customers/ada): her orders stay with a snapshot (keep), her loyalty account goes (cascade)',
  );
  await request(urls.customers, 'DELETE', '/customers/ada');
  await until(async () => (await balance('ada')) === undefined, 'ada’s account removed');
  const kept = await order('o-1');
  say(`  order o-1 kept: state ${kept.state}, customer snapshot "${kept.customer_name}"`);
  say('  loyalty: no account for ada any more');

  step('someone changes edsger with plain SQL: Baton’s trigger still announces it');
  await sql(
    db.customers,
    "UPDATE customers SET address = 'Den Dolech 2, Eindhoven' WHERE id = 'edsger'",
  );
  await until(
    async () =>
      (
        await sql(
          db.orders,
          "SELECT fields->>'address' AS a FROM baton.replica_customer WHERE id = 'edsger'",
        )
      ).rows[0]?.a === 'Den Dolech 2, Eindhoven',
    'the new address in the orders replica',
  );
  say('  orders’ replica of edsger has the new address');

  step(
    'someone deletes grace with plain SQL and the triggers switched off (a careless maintenance script): no event goes out',
  );
  await sql(
    db.customers,
    "BEGIN; SET LOCAL session_replication_role = replica; DELETE FROM customers WHERE id = 'grace'; COMMIT;",
  );
  say(`  loyalty still shows grace: ${await balance('grace')} points — the services disagree`);

  step('the caretaker compares each replica with its owner, finds grace, and repairs by policy');
  const reconcile = (
    service: 'orders' | 'loyalty',
    options: { repair: boolean; approve?: boolean },
  ) =>
    request<{ totals: { byClass: Record<string, number>; repaired: number } }>(
      urls[service],
      'POST',
      '/admin/reconcile',
      options,
      admin,
      60_000,
    );
  for (const service of ['orders', 'loyalty'] as const) {
    const dry = await reconcile(service, { repair: false });
    say(
      `  ${service}: dry run finds ${JSON.stringify(Object.fromEntries(Object.entries(dry.body.totals.byClass).filter(([, n]) => n > 0)))}`,
    );
  }
  const fixed = await reconcile('orders', { repair: true, approve: true });
  say(
    `  orders: repaired ${fixed.body.totals.repaired} (true orphan confirmed by approval): customers announces grace deleted — its missing tombstone written — and orders applies its policy`,
  );
  await until(async () => (await balance('grace')) === undefined, 'loyalty hears of it');
  say(
    `  loyalty hears the announcement like any delete: grace’s account is gone (cascade): ${(await balance('grace')) === undefined ? 'yes' : 'no'}`,
  );
  const after = await reconcile('loyalty', { repair: true });
  say(`  loyalty: its caretaker now finds ${after.body.totals.repaired} to repair`);
}
