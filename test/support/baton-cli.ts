import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runCli } from '../../src/cli/run.ts';

/**
 * Runs the real `baton` command as a child process (`node bin/baton.js`), as
 * an operator would, with only the environment the test gives it: Baton's
 * own variables from the test runner's environment are removed first.
 */
const BIN = fileURLToPath(new URL('../../bin/baton.js', import.meta.url));
const BATON_ENV = ['BATON_DATABASE_URL', 'DATABASE_URL', 'BATON_HMAC_SECRET', 'BATON_BEARER_TOKEN'];

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function baton(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  const base = { ...process.env };
  for (const name of BATON_ENV) delete base[name];
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...base, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr });
      },
    );
  });
}

/** The same command in this process (no terminal): cheaper, for the cases that need no separate process. */
export async function inProcess(
  args: readonly string[],
  env: Record<string, string>,
): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    out: (text) => {
      stdout += text;
    },
    err: (text) => {
      stderr += text;
    },
    env,
  });
  return { code, stdout, stderr };
}
