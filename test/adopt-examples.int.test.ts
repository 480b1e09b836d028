import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/*
 * The two apps of examples/adopt, as users write them, against the built
 * package (`npm test` builds dist/ before vitest; `baton` resolves to this
 * repository as an installed package would): each is type-checked by tsc,
 * then run — two services on real databases, over real HTTP — through its
 * walk-through (a reference checked on write and kept on delete, a saga that
 * holds and compensates). And the README's count of Baton wiring lines per
 * service is the count of the files as they are, each at most 40.
 */

const run = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const dbs: TestDatabase[] = [];

beforeAll(async () => {
  for (const name of ['adopt_a', 'adopt_b', 'adopt_c', 'adopt_d'])
    dbs.push(await freshDatabase(name));
});
afterAll(async () => {
  for (const db of dbs) await db.drop();
});

interface App {
  dir: string;
  /** How to run its walk-through once type-checked/compiled. */
  command: string[];
  env: (urls: string[]) => Record<string, string>;
  /** Per service: the Baton wiring file and the app files whose Baton lines also count. */
  services: { name: string; wiring: string; app: string[] }[];
}

const APPS: App[] = [
  {
    dir: 'examples/adopt/express-drizzle',
    command: [process.execPath, '--import', 'tsx', 'main.ts'],
    env: ([a, b]) => ({ CATALOG_DATABASE_URL: a as string, ORDERS_DATABASE_URL: b as string }),
    services: [
      { name: 'catalog', wiring: 'catalog-baton.ts', app: ['catalog.ts'] },
      { name: 'orders', wiring: 'orders-baton.ts', app: ['orders.ts'] },
    ],
  },
  {
    dir: 'examples/adopt/nest-typeorm',
    command: [process.execPath, 'dist/main.js'],
    env: ([, , a, b]) => ({ ACCOUNTS_DATABASE_URL: a as string, ORDERS_DATABASE_URL: b as string }),
    services: [
      { name: 'accounts', wiring: 'accounts-baton.ts', app: ['services.ts:startAccounts'] },
      {
        name: 'orders',
        wiring: 'orders-baton.ts',
        app: [
          'services.ts:const USER_REF',
          'services.ts:OrdersController',
          'services.ts:startOrders',
        ],
      },
    ],
  },
];

const code = (line: string) =>
  line.trim() !== '' && !/^(\/\/|\/\*|\*)/.test(line.trim()) && !/^import /.test(line.trim());
/** App lines that touch Baton: its instance and module, or what a wiring file hands the app. */
const TOUCHES_BATON =
  /\bbaton\b|\bBaton|\bBATON\b|\bwiring\b|\bmiddleware\b|\brunning\b|\.check\(|userRef|USER_REF|ReferenceViolation|error\.reason|from(Drizzle|TypeORM)\(/;

/**
 * Lines of Baton wiring of a service: every code line (imports aside) of
 * its wiring file, and the lines of its app files that touch Baton
 * (`file.ts:Name` counts only the block that starts at `Name`).
 */
async function wiringLines(dir: string, service: App['services'][number]): Promise<number> {
  const wiring = (await readFile(join(ROOT, dir, service.wiring), 'utf8')).split('\n').filter(code);
  let app = 0;
  for (const spec of service.app) {
    const [file, block] = spec.split(':') as [string, string | undefined];
    let lines = (await readFile(join(ROOT, dir, file), 'utf8')).split('\n');
    if (block) {
      const start = lines.findIndex((l) => l.includes(block));
      const end = lines.findIndex((l, i) => i > start && /^\S/.test(l) && !l.startsWith('}'));
      lines = lines.slice(start, end === -1 ? undefined : end);
    }
    app += lines.filter((l) => code(l) && TOUCHES_BATON.test(l)).length;
  }
  return wiring.length + app;
}

describe('examples/adopt', () => {
  it.each(APPS)(
    '$dir type-checks against the built package and its walk-through passes',
    async (app) => {
      const cwd = join(ROOT, app.dir);
      await run(process.execPath, [TSC, '-p', '.'], { cwd }).catch((error: { stdout?: string }) => {
        throw new Error(`tsc failed in ${app.dir}:\n${error.stdout}`);
      });
      const [bin, ...args] = app.command as [string, ...string[]];
      const { stdout } = await run(bin, args, {
        cwd,
        env: { ...process.env, ...app.env(dbs.map((d) => d.url)) },
        timeout: 120_000,
      }).catch((error: { stdout?: string; stderr?: string }) => {
        throw new Error(`${app.dir} failed:\n${error.stdout}\n${error.stderr}`);
      });
      expect(stdout).toMatch(/"failed":0/);
      expect(stdout).not.toMatch(/✗/);
    },
    180_000,
  );

  it('README counts the Baton wiring of each service, at most 40 lines', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    for (const app of APPS) {
      for (const service of app.services) {
        const lines = await wiringLines(app.dir, service);
        expect(lines, `${app.dir} ${service.name}`).toBeLessThanOrEqual(40);
        const row = new RegExp(`\\| \`${app.dir}\` \\| ${service.name} \\| (\\d+) \\|`);
        expect(readme.match(row)?.[1], `README row for ${app.dir} ${service.name}`).toBe(
          String(lines),
        );
      }
    }
  });
});
