import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningShop, startShop } from '../examples/shop/launcher.ts';
import { request, until } from '../examples/shop/shop-client.ts';
import { story } from '../examples/shop/story.ts';

/*
 * The operator's dashboard in a real browser (Debian's headless Chromium,
 * driven by playwright-core), after the shop's story: the operator logs in,
 * sees the sagas and a saga's timeline, retries a dead letter once its cause
 * is fixed and sees it handled, approves a quarantined orphan and sees the
 * caretaker repair it — and a `<script>` a customer typed into their name is
 * shown as text, never run. Screenshots of each page are kept in
 * `.baton/screenshots/` (CI output; the README's pictures come from there).
 */
const CHROMIUM = process.env.BATON_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = join(process.cwd(), '.baton', 'screenshots');
const HOSTILE_NAME = '<script>window.__pwned = true</script><img src=x onerror="window.__pwned=1">';

async function sql(url: string, text: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

describe('the dashboard, in headless Chromium, after the shop’s story', () => {
  let shop: RunningShop;
  let browser: Browser;
  let page: Page;
  const admin = () => ({ authorization: `Bearer ${shop.adminToken}` });

  beforeAll(async () => {
    if (!existsSync(CHROMIUM))
      throw new Error(
        `Chromium is not at ${CHROMIUM}: install it (\`apt-get install -y chromium\`, as .ci/run and \`npm test\`'s pre-step do where they can), or point BATON_CHROMIUM at one.`,
      );
    mkdirSync(SHOTS, { recursive: true });
    // Two attempts at loyalty, so a poisoned event is a dead letter within a second or two.
    shop = await startShop({ consumers: { loyalty: { maxAttempts: 2 } } });
    await story(shop, () => {});
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('dialog', (d) => void d.dismiss());
  }, 240_000);
  afterAll(async () => {
    await browser?.close();
    await shop?.stop();
  });

  const shot = (name: string) =>
    page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

  async function logIn(service: keyof RunningShop['urls']) {
    // Cookies belong to a host, not a port: start each service's visit logged out.
    await page.context().clearCookies();
    await page.goto(`${shop.urls[service]}/dashboard`);
    expect(page.url()).toMatch(/\/dashboard\/login$/); // no session: the login form
    await page.fill('input[name=token]', 'not-the-operator-token-at-all');
    await page.click('button:has-text("Log in")');
    expect(await page.textContent('.notice')).toContain('not an operator token');
    await page.fill('input[name=token]', shop.adminToken);
    await page.click('button:has-text("Log in")');
    expect(await page.textContent('h1')).toBe('Overview');
  }

  it('shows the sagas of the story, and one saga’s timeline', async () => {
    await logIn('orders');
    expect(await page.textContent('main')).toContain('orders-from-customers');
    await shot('overview-orders');
    await page.click('header nav a:has-text("Sagas")');
    const rows = page.locator('main table tbody tr');
    expect(await rows.count()).toBeGreaterThanOrEqual(3);
    const text = await page.textContent('main table');
    expect(text).toContain('place-order');
    expect(text).toContain('cancel-order');
    await page.click('main .filters a:has-text("compensated")');
    expect(page.url()).toContain('state=compensated');
    await page.click('main .filters a:has-text("completed")');
    await shot('sagas');
    await page.click('main table tbody tr >> nth=0 >> a');
    expect(await page.textContent('h1')).toMatch(/^Saga /);
    const timeline = await page.textContent('ol.timeline');
    expect(timeline).toContain('started');
    expect(timeline).toMatch(/step \S+ \(\w+\) began/);
    expect(timeline).toContain('completed');
    await shot('saga-timeline');
  });

  it('retries a dead letter once its cause is fixed, and sees it handled; a <script> in its payload is text', async () => {
    // A bad deploy at loyalty: its handler for this customer now fails on every attempt.
    await sql(
      shop.databaseUrls.loyalty,
      "ALTER TABLE movements ADD CONSTRAINT dashboard_poison CHECK (customer_id <> 'mallory')",
    );
    const registered = await request(shop.urls.customers, 'POST', '/customers', {
      id: 'mallory',
      name: HOSTILE_NAME,
      address: '1 Side Street',
    });
    expect(registered.status).toBe(201);
    await until(
      async () =>
        (
          await sql(
            shop.databaseUrls.loyalty,
            "SELECT 1 FROM baton.inbox WHERE status = 'dead' AND key = 'customer:mallory'",
          )
        ).rowCount === 1,
      'the dead letter at loyalty',
    );

    await logIn('loyalty');
    expect(await page.textContent('.card:has-text("dead letters") b')).toBe('1');
    await page.click('header nav a:has-text("Dead letters")');
    await shot('dead-letters');
    await page.click('main table tbody tr >> nth=0 >> a');
    expect(await page.textContent('h1')).toMatch(/^Inbox entry \d+$/);
    // The name is on the page as the characters the customer typed…
    expect(await page.textContent('main')).toContain(HOSTILE_NAME.replaceAll('"', '\\"'));
    // …and nothing of it became markup or ran.
    expect(
      await page.evaluate(() => (globalThis as { __pwned?: unknown }).__pwned),
    ).toBeUndefined();
    expect(await page.locator('main script, main img').count()).toBe(0);
    expect(await page.textContent('main')).toContain('dashboard_poison');
    await shot('dead-letter');

    // The operator fixes the cause, then retries from the page.
    await sql(shop.databaseUrls.loyalty, 'ALTER TABLE movements DROP CONSTRAINT dashboard_poison');
    await page.click('button:has-text("Retry")');
    expect(await page.textContent('.notice')).toContain('Retried');
    const entry = page.url();
    await until(async () => {
      await page.goto(entry);
      return (await page.textContent('main tr:has-text("status") .state')) === 'handled';
    }, 'the retried entry handled');
    expect((await request(shop.urls.loyalty, 'GET', '/accounts/mallory')).body).toMatchObject({
      balance: 100,
    });
    await shot('dead-letter-handled');
    await page.click('header nav a:has-text("Dead letters")');
    expect(await page.textContent('main')).toContain('No dead letters.');
  });

  it('approves a quarantined orphan; the caretaker’s next repairing run repairs it', async () => {
    // An owner row deleted behind Baton's back: orders' replica now holds a true orphan.
    await request(shop.urls.customers, 'POST', '/customers', {
      id: 'zed',
      name: 'Zed',
      address: 'x',
    });
    await until(
      async () =>
        (
          await sql(
            shop.databaseUrls.orders,
            "SELECT 1 FROM baton.replica_customer WHERE id = 'zed'",
          )
        ).rowCount === 1,
      'orders replicates zed',
    );
    await sql(
      shop.databaseUrls.customers,
      "BEGIN; SET LOCAL session_replication_role = replica; DELETE FROM customers WHERE id = 'zed'; COMMIT;",
    );
    const run = await request<{ totals: { quarantined: number } }>(
      shop.urls.orders,
      'POST',
      '/admin/reconcile',
      { repair: true },
      admin(),
      60_000,
    );
    expect(run.body.totals.quarantined).toBe(1);

    await logIn('orders');
    await page.click('header nav a:has-text("References")');
    const quarantined = page.locator('main tr:has-text("zed")');
    expect(await quarantined.count()).toBe(1);
    await shot('references');
    await quarantined.locator('button:has-text("Approve")').click();
    expect(await page.textContent('.notice')).toContain('Approved');
    expect(await page.textContent('main tr:has-text("zed")')).toContain('approved');

    const repaired = await request<{ totals: { repaired: number } }>(
      shop.urls.orders,
      'POST',
      '/admin/reconcile',
      { repair: true },
      admin(),
      60_000,
    );
    expect(repaired.body.totals.repaired).toBeGreaterThanOrEqual(1);
    await page.reload();
    expect(await page.textContent('main')).toContain('Nothing in quarantine.');
    await page.click('header nav a:has-text("Caretaker")');
    await shot('caretaker');
    await page.click('main table tbody tr >> nth=0 >> a');
    expect(await page.textContent('main')).toContain('true-orphan');
  });

  it('refuses a forged form: no CSRF token, or sent from another site', async () => {
    await logIn('orders');
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'baton_dashboard_orders');
    expect(session?.httpOnly).toBe(true);
    expect(session?.sameSite).toBe('Strict');
    const cookie = `baton_dashboard_orders=${session?.value}`;
    const post = (headers: Record<string, string>, body: string) =>
      fetch(`${shop.urls.orders}/dashboard/quarantine/approve`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, ...headers },
        body,
        redirect: 'manual',
      });
    expect((await post({}, 'entity=customer&id=zed')).status).toBe(403);
    const csrf = await page.getAttribute('input[name=csrf]', 'value');
    const fromElsewhere = await post(
      { origin: 'http://evil.example' },
      `csrf=${csrf}&entity=customer&id=zed`,
    );
    expect(fromElsewhere.status).toBe(403);
    const headers = await fetch(`${shop.urls.orders}/dashboard/`, { headers: { cookie } });
    expect(headers.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(headers.headers.get('x-frame-options')).toBe('DENY');
  });
});
