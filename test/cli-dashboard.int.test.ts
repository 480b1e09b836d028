import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';
import { baton } from './support/baton-cli.ts';

/**
 * `baton dashboard`, run as a child process (`node bin/baton.js`, the built
 * CLI) against a migrated database: it prints its URL, serves the login and
 * the pages behind it, and stops cleanly on SIGTERM.
 */

const BIN = fileURLToPath(new URL('../bin/baton.js', import.meta.url));
const TOKEN = 'operator-token-0123456789abcdef';

interface Served {
  child: ChildProcessWithoutNullStreams;
  /** The line it printed. */
  line: string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

const children: ChildProcessWithoutNullStreams[] = [];

/** Starts `baton dashboard …` and resolves once it printed its URL line. */
function serve(args: readonly string[], env: Record<string, string>): Promise<Served> {
  const base = { ...process.env };
  for (const name of Object.keys(base)) if (/^(BATON_|DATABASE_URL$)/.test(name)) delete base[name];
  const child = spawn(process.execPath, [BIN, 'dashboard', ...args], {
    env: { ...base, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>(
    (resolve) => child.once('close', (code, signal) => resolve({ code, signal, stderr })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL line within 30 s: ${stderr}`)), 30_000);
    createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      resolve({ child, line, exit });
    });
    void exit.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code}) before printing its URL: ${stderr}`));
    });
  });
}

describe('baton dashboard, as a child process', () => {
  let t: TestDatabase;
  let env: Record<string, string>;
  beforeAll(async () => {
    t = await freshDatabase('cli_dashboard');
    env = { BATON_DATABASE_URL: t.url, BATON_DASHBOARD_TOKEN: TOKEN };
  });
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  });
  afterAll(async () => {
    await t?.drop();
  });

  it('prints its URL, serves the login and the pages behind it, and stops on SIGTERM with exit 0', async () => {
    const database = new URL(t.url).pathname.slice(1);
    const { child, line, exit } = await serve(['--port', '0'], env);
    const printed =
      /^dashboard for (\S+) at (http:\/\/127\.0\.0\.1:(\d+)\/dashboard\/) \(log in with the operator token\)$/.exec(
        line,
      );
    expect(printed, line).not.toBeNull();
    const [, service, url, port] = printed as RegExpExecArray;
    // Nothing recorded in the database's settings: named after the database.
    expect(service).toBe(database);
    expect(Number(port)).toBeGreaterThan(0);
    const origin = new URL(url as string).origin;

    const anonymous = await fetch(`${origin}/dashboard`, { redirect: 'manual' });
    expect(anonymous.status).toBe(303);
    expect(anonymous.headers.get('location')).toBe('/dashboard/login');
    const root = await fetch(`${origin}/`, { redirect: 'manual' });
    expect(root.status).toBe(303);
    expect(root.headers.get('location')).toBe('/dashboard/');

    const logIn = (token: string) =>
      fetch(`${origin}/dashboard/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }).toString(),
      });
    const wrong = await logIn('not-the-operator-token-at-all');
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
    expect(await wrong.text()).toContain('That is not an operator token of this service.');

    const right = await logIn(TOKEN);
    expect(right.status).toBe(303);
    expect(right.headers.get('location')).toBe('/dashboard/');
    const setCookie = right.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(/^baton_dashboard_[A-Za-z0-9_-]+=[^;]+;/);
    expect(setCookie).toContain('; HttpOnly');
    expect(setCookie).toContain('; SameSite=Strict');
    expect(setCookie).toContain('Path=/dashboard');
    const cookie = setCookie.split(';')[0] as string;

    const overview = await fetch(`${origin}/dashboard/`, {
      headers: { cookie },
      redirect: 'manual',
    });
    expect(overview.status).toBe(200);
    expect(overview.headers.get('content-type')).toContain('text/html');
    const page = await overview.text();
    expect(page).toContain('Overview');
    expect(page).toContain(database);
    // A forged cookie opens nothing.
    const forged = await fetch(`${origin}/dashboard/`, {
      headers: { cookie: `${cookie}x` },
      redirect: 'manual',
    });
    expect(forged.status).toBe(303);

    // A second one on the same port, or on a schema without Baton, says why it cannot start.
    const [taken, uninstalled] = await Promise.all([
      baton(['dashboard', '--port', port as string], env),
      baton(['dashboard', '--port', '0', '--schema', 'nowhere'], env),
    ]);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain(`cannot listen on 127.0.0.1:${port}: the port is in use`);
    expect(uninstalled.code).toBe(1);
    expect(uninstalled.stderr).toContain('schema "nowhere" is not installed');

    child.kill('SIGTERM');
    const ended = await exit;
    expect(ended).toEqual({ code: 0, signal: null, stderr: '' });
    // The port is free again: the server was closed.
    await expect(fetch(`${origin}/dashboard/login`)).rejects.toThrow();
  });

  it('names the service Baton recorded, or the one given with --service; serves under --base-path', async () => {
    await t.db.query(
      `INSERT INTO baton.settings (name, value) VALUES ('service', 'orders')
       ON CONFLICT (name) DO UPDATE SET value = excluded.value`,
    );
    try {
      const recorded = await serve(['--port', '0', '--base-path', '/ops/board/'], env);
      expect(recorded.line).toMatch(
        /^dashboard for orders at http:\/\/127\.0\.0\.1:\d+\/ops\/board\/ \(log in with the operator token\)$/,
      );
      const origin = new URL(recorded.line.split(' ')[4] as string).origin;
      const login = await fetch(`${origin}/ops/board/login`);
      expect(login.status).toBe(200);
      expect(await login.text()).toContain('orders');
      recorded.child.kill('SIGINT');
      const stopped = await recorded.exit;
      expect([stopped.code, stopped.signal, stopped.stderr]).toEqual([0, null, '']);

      const given = await serve(['--port', '0', '--service', 'billing'], env);
      expect(given.line).toMatch(/^dashboard for billing at /);
      given.child.kill('SIGTERM');
      const ended = await given.exit;
      expect([ended.code, ended.signal, ended.stderr]).toEqual([0, null, '']);
    } finally {
      await t.db.query(`DELETE FROM baton.settings WHERE name = 'service'`);
    }
  });

  it('takes the tokens from BATON_DASHBOARD_TOKEN_FILE, one per line; refuses both variables at once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'baton-dashboard-'));
    try {
      const file = join(dir, 'tokens');
      const next = 'next-operator-token-fedcba9876543210';
      await writeFile(file, `${TOKEN}\n${next}\n`);
      const fromFile = await serve(['--port', '0'], {
        BATON_DATABASE_URL: t.url,
        BATON_DASHBOARD_TOKEN_FILE: file,
      });
      const origin = new URL(fromFile.line.split(' ')[4] as string).origin;
      for (const token of [TOKEN, next]) {
        const login = await fetch(`${origin}/dashboard/login`, {
          method: 'POST',
          redirect: 'manual',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token }).toString(),
        });
        expect(login.status).toBe(303);
      }
      fromFile.child.kill('SIGTERM');
      expect((await fromFile.exit).code).toBe(0);

      const [both, unreadable] = await Promise.all([
        baton(['dashboard', '--port', '0'], { ...env, BATON_DASHBOARD_TOKEN_FILE: file }),
        baton(['dashboard', '--port', '0'], {
          BATON_DATABASE_URL: t.url,
          BATON_DASHBOARD_TOKEN_FILE: join(dir, 'absent'),
        }),
      ]);
      expect(both.code).toBe(2);
      expect(both.stderr).toContain('both BATON_DASHBOARD_TOKEN and BATON_DASHBOARD_TOKEN_FILE');
      expect(unreadable.code).toBe(2);
      expect(unreadable.stderr).toContain('cannot read BATON_DASHBOARD_TOKEN_FILE');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start without an operator token, or with a short one, naming what to set (exit 2)', async () => {
    const [missing, short, badPort] = await Promise.all([
      baton(['dashboard', '--port', '0'], { BATON_DATABASE_URL: t.url }),
      baton(['dashboard', '--port', '0'], {
        BATON_DATABASE_URL: t.url,
        BATON_DASHBOARD_TOKEN: 'tiny-secret',
      }),
      baton(['dashboard', '--port', '70000'], env),
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toContain('no operator token: set BATON_DASHBOARD_TOKEN');
    expect(missing.stderr).toContain('BATON_DASHBOARD_TOKEN_FILE');
    expect(short.code).toBe(2);
    expect(short.stderr).toContain('BATON_DASHBOARD_TOKEN is 11 characters');
    expect(short.stderr).not.toContain('tiny-secret');
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toContain("option '--port <port>' argument '70000' is invalid");
  });
});
