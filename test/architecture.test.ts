import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/*
 * The house rules (.dependency-cruiser.cjs) hold for src/, and they bite: a
 * copy of src/ with one import that breaks a rule fails the check, and the
 * failure names the rule.
 */
const run = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;
const depcruise = join(root, 'node_modules', '.bin', 'depcruise');
let copy: string;

async function check(dir: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout } = await run(depcruise, ['src', '--config', '.dependency-cruiser.cjs'], {
      cwd: dir,
    });
    return { code: 0, output: stdout };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, output: `${e.stdout}${e.stderr}` };
  }
}

beforeAll(async () => {
  copy = await mkdtemp(join(tmpdir(), 'baton-architecture-'));
  for (const entry of ['src', '.dependency-cruiser.cjs', 'tsconfig.json', 'package.json']) {
    await cp(join(root, entry), join(copy, entry), { recursive: true });
  }
  await symlink(join(root, 'node_modules'), join(copy, 'node_modules'));
});
afterAll(async () => {
  if (copy) await rm(copy, { recursive: true, force: true });
});

describe('the dependency rules of src/', () => {
  it('hold for src/ as it is', async () => {
    const result = await check(root);
    expect(result.output).toContain('no dependency violations found');
    expect(result.code).toBe(0);
  });

  it('bite: each broken rule fails the check, named', async () => {
    const broken = [
      [
        'src/messaging/probe.ts',
        "import '../references/definitions.ts';",
        'messaging-imports-only-below',
      ],
      [
        'src/references/probe.ts',
        "import '../sagas/saga-states.ts';",
        'references-imports-only-below',
      ],
      ['src/sagas/probe.ts', "import '../references/definitions.ts';", 'sagas-imports-only-below'],
      ['src/core/probe.ts', "import '../db/sql.ts';", 'core-imports-only-below'],
      ['src/caretaker/probe.ts', "import '../baton.ts';", 'rooms-never-import-the-composition'],
      ['src/cli/probe.ts', "import '../status.ts';", 'cli-only-through-the-faces'],
    ] as const;
    for (const [file, line] of broken) await writeFile(join(copy, file), `${line}\n`);
    const result = await check(copy);
    expect(result.code).not.toBe(0);
    for (const [file, , rule] of broken) expect(result.output).toContain(`error ${rule}: ${file}`);
  });
});
