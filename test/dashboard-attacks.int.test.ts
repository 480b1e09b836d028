import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBaton, createDashboard, type RunningServer, serveHttp } from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/*
 * The dashboard attacked over real HTTP on loopback, each case one an
 * outside review found (or its neighbours): an id with a line break that
 * reached a redirect header and killed the process, a session good for
 * every dashboard of the host, a logout that ended nothing, a cookie tossed
 * in by another port's page, malformed input answered as "the database is
 * down", one hand-written caretaker report that broke the caretaker pages.
 */
const TOKEN = 'operator-token-for-attacks-0123456789';

describe('the dashboard under attack', () => {
  let database: TestDatabase;
  let orders: RunningServer;
  let loyalty: RunningServer;

  beforeAll(async () => {
    database = await freshDatabase('dashboard_attacks');
    const baton = createBaton({ db: database.db, service: 'orders' });
    await baton.migrate();
    const dashboardOf = (service: string) =>
      createDashboard({ db: database.db, service, operators: { tokens: [TOKEN] } });
    // Two services' dashboards on one host, with the same token (as the demo has).
    const [a, b] = [dashboardOf('orders'), dashboardOf('loyalty')];
    orders = await serveHttp((r, s) => a.handle(r, s), { refuseEarly: (h) => a.refuseEarly(h) });
    loyalty = await serveHttp((r, s) => b.handle(r, s), { refuseEarly: (h) => b.refuseEarly(h) });
    await database.db.query(`
      INSERT INTO baton.subscriptions (name, source, cursor, types, on_dead_letter, seal)
        VALUES ('orders-from-customers', 'customers', '1', '{}', 'block-key', baton.cursor_seal('orders-from-customers', '1'));
      INSERT INTO baton.inbox (subscription, position, event_id, type, key, version, payload, headers,
          occurred_at, source, status, attempts, next_attempt_at, last_error, received_at, seal)
        SELECT 'orders-from-customers', g::text, md5('e' || g)::uuid, 'customer.registered', 'customer:' || g, 1,
          '{}'::jsonb, '{}'::jsonb, now(), 'customers', 'dead', 3, now(), 'failed', now(),
          baton.inbox_seal('orders-from-customers', md5('e' || g)::uuid, 'customer.registered', 'customer:' || g, 1, '{}'::jsonb, '{}'::jsonb, 'dead')
        FROM generate_series(1, 5) g;
      INSERT INTO baton.reconcile_runs (started_at, repair, report) VALUES
        (now(), true, '{"entities":"x"}'), (now(), false, '{"entities":[null, 1, {"examples":"y"}],"invariants":{"a":1},"totals":[]}');`);
  });
  afterAll(async () => {
    await orders?.close();
    await loyalty?.close();
    await database?.drop();
  });

  async function logIn(server: RunningServer): Promise<{ cookie: string; csrf: string }> {
    const answer = await fetch(`${server.url}/dashboard/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${TOKEN}`,
      redirect: 'manual',
    });
    expect(answer.status).toBe(303);
    const cookie = (answer.headers.get('set-cookie') ?? '').split(';')[0] as string;
    const page = await (await fetch(`${server.url}/dashboard/`, { headers: { cookie } })).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(page)?.[1] as string;
    return { cookie, csrf };
  }
  const post = (server: RunningServer, path: string, cookie: string, body: string) =>
    fetch(`${server.url}/dashboard${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
      body,
      redirect: 'manual',
    });
  const inboxStatus = async (id: number) =>
    (
      await database.db.query<{ status: string }>('SELECT status FROM baton.inbox WHERE id = $1', [
        id,
      ])
    ).rows[0]?.status;

  it('refuses an id with a line break or other controls; the server lives on', async () => {
    const { cookie, csrf } = await logIn(orders);
    for (const id of ['%0A1', '%0D1', '1%0B', '%E2%80%A81', '%EF%BB%BF1', '%E3%80%801', '%201']) {
      const answer = await post(orders, `/dead-letters/${id}/discard`, cookie, `csrf=${csrf}`);
      expect(answer.status, id).toBe(400);
    }
    expect(await inboxStatus(1)).toBe('dead');
    // A good one still works, its redirect built from the parsed id.
    const good = await post(orders, '/dead-letters/01/discard', cookie, `csrf=${csrf}`);
    expect([good.status, good.headers.get('location')]).toEqual([
      303,
      '/dashboard/dead-letters/1?done=discarded',
    ]);
    expect(await inboxStatus(1)).toBe('discarded');
  });

  it('never lets a header Node refuses end the process (the answer is a 500)', async () => {
    // A handler answering with a line break in a header, as the redirect once did.
    const server = await serveHttp(async () => ({
      status: 303,
      headers: { location: '/x\n1' },
      body: '',
    }));
    try {
      expect((await fetch(`${server.url}/`, { redirect: 'manual' })).status).toBe(500);
      expect((await fetch(`${server.url}/`, { redirect: 'manual' })).status).toBe(500);
    } finally {
      await server.close();
    }
  });

  it('binds a session to its service: another dashboard on the host does not take it', async () => {
    const { cookie } = await logIn(orders);
    const [name, value] = cookie.split('=');
    expect(name).toBe('baton_dashboard_orders');
    const there = await fetch(`${loyalty.url}/dashboard/`, {
      headers: { cookie: `baton_dashboard_loyalty=${value}` },
      redirect: 'manual',
    });
    expect(there.status).toBe(303); // to its login
    // Both logged in at once: each its own cookie.
    const both = `${cookie}; ${(await logIn(loyalty)).cookie}`;
    for (const server of [orders, loyalty])
      expect((await fetch(`${server.url}/dashboard/`, { headers: { cookie: both } })).status).toBe(
        200,
      );
  });

  it('ends a session at logout, for every later request with its cookie', async () => {
    const { cookie, csrf } = await logIn(orders);
    expect((await post(orders, '/logout', cookie, `csrf=${csrf}`)).status).toBe(303);
    const after = await fetch(`${orders.url}/dashboard/`, {
      headers: { cookie },
      redirect: 'manual',
    });
    expect(after.status).toBe(303);
    const action = await post(orders, '/dead-letters/2/discard', cookie, `csrf=${csrf}`);
    expect(action.status).toBe(401);
    expect(await inboxStatus(2)).toBe('dead');
  });

  it('is not shadowed by a junk cookie of the same name tossed in first', async () => {
    const { cookie } = await logIn(orders);
    const tossed = `baton_dashboard_orders=junk; ${cookie}`;
    expect(
      (await fetch(`${orders.url}/dashboard/sagas`, { headers: { cookie: tossed } })).status,
    ).toBe(200);
  });

  it('answers malformed input with 400, not "the database did not answer"', async () => {
    const { cookie } = await logIn(orders);
    for (const path of [
      '/sagas/%',
      '/dead-letters/%E0%A4%A',
      '/sagas/%ED%A0%80',
      '/sagas?name=a%00b',
      '/sagas?before=%00',
      '/dead-letters?subscription=%00',
    ])
      expect(
        (await fetch(`${orders.url}/dashboard${path}`, { headers: { cookie } })).status,
        path,
      ).toBe(400);
  });

  it('approves every quarantined orphan at once, past the 100 listed', async () => {
    await database.db.query(
      "INSERT INTO baton.quarantine (entity, id) SELECT 'customer', 'ghost-' || g FROM generate_series(1, 120) g",
    );
    const { cookie, csrf } = await logIn(orders);
    const page = await (
      await fetch(`${orders.url}/dashboard/references`, { headers: { cookie } })
    ).text();
    expect(page).toContain('Approve all 120');
    const answer = await post(orders, '/quarantine/approve-all', cookie, `csrf=${csrf}`);
    expect([answer.status, answer.headers.get('location')]).toEqual([
      303,
      '/dashboard/references?done=approved-all',
    ]);
    const left = await database.db.query('SELECT 1 FROM baton.quarantine WHERE NOT approved');
    expect(left.rowCount).toBe(0);
    expect((await post(orders, '/quarantine/approve-all', cookie, 'csrf=forged')).status).toBe(403);
  });

  it('shows the caretaker pages whatever a stored report holds', async () => {
    const { cookie } = await logIn(orders);
    const list = await fetch(`${orders.url}/dashboard/caretaker`, { headers: { cookie } });
    expect(list.status).toBe(200);
    const ids = (
      await database.db.query<{ id: string }>('SELECT id::text FROM baton.reconcile_runs')
    ).rows;
    for (const { id } of ids)
      expect(
        (await fetch(`${orders.url}/dashboard/caretaker/${id}`, { headers: { cookie } })).status,
      ).toBe(200);
    expect((await fetch(`${orders.url}/dashboard/`, { headers: { cookie } })).status).toBe(200);
  });
});
