import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';
import { inProcess } from './support/baton-cli.ts';

/**
 * Data an attacker can write — a customer id that becomes a saga's key, an
 * error text, an event's key and payload — never acts on the operator's
 * terminal: `baton sagas list|show`, `baton dlq list|show` and `baton
 * status` print escape sequences, carriage returns, newlines inside a value,
 * C1 controls and bidirectional overrides as visible `\uXXXX`, in text and
 * in `--json` (security review, item 8).
 */

const CLEAR_AND_FAKE = '\u001b[2J\u001b[Hbaton: all consistent\r\u009b31m\u202eevil';
/** Bytes that act on a terminal; none may reach the operator's screen. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const ACTING = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

let t: TestDatabase;
let env: Record<string, string>;

beforeAll(async () => {
  t = await freshDatabase('cli_terminal');
  env = { BATON_DATABASE_URL: t.url };
  await t.db.query(
    `INSERT INTO baton.sagas (id, name, key, input, state, stuck_from, error, created_at)
     VALUES ('s-1', 'place-order', $1, $2, 'stuck', 'compensating', $3, now())`,
    [`cust${CLEAR_AND_FAKE}`, JSON.stringify({ customerId: CLEAR_AND_FAKE }), CLEAR_AND_FAKE],
  );
  await t.db.query(
    `INSERT INTO baton.saga_steps (saga_id, name, kind, ordinal, state, attempts, last_error, completed_at)
     VALUES ('s-1', 'spend-points', 'reserve', 1, 'completed', 1, $1, now())`,
    [CLEAR_AND_FAKE],
  );
});
afterAll(async () => {
  await t?.drop();
});

describe('the CLI shows hostile data, it does not obey it', () => {
  it.each([
    [['sagas', 'list']],
    [['sagas', 'show', 's-1']],
    [['--json', 'sagas', 'list']],
    [['--json', 'sagas', 'show', 's-1']],
    [['status']],
  ])('baton %j', async (args) => {
    const run = await inProcess(args, env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).not.toMatch(ACTING);
    expect(run.stdout).toContain('\\u001b[2J');
  });

  it('the JSON stays JSON and keeps the value exactly', async () => {
    const run = await inProcess(['--json', 'sagas', 'show', 's-1'], env);
    const detail = JSON.parse(run.stdout) as { key: string; input: { customerId: string } };
    expect(detail.key).toBe(`cust${CLEAR_AND_FAKE}`);
    expect(detail.input.customerId).toBe(CLEAR_AND_FAKE);
  });
});
