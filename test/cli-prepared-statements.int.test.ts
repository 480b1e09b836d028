import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_USAGE, UsageError } from '../src/cli/cli-errors.ts';
import { preparedStatementsFrom } from '../src/cli/connection.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';
import { inProcess } from './support/baton-cli.ts';
import { startWireSpy, type WireSpy } from './support/pg-wire-spy.ts';

/**
 * The CLI behind a pooler that cannot keep prepared statements:
 * BATON_PREPARED_STATEMENTS=off makes every command send its statements
 * unnamed. Seen on the wire — a relay on loopback between the CLI and
 * PostgreSQL notes every statement the CLI prepares.
 */
describe('BATON_PREPARED_STATEMENTS for the CLI', () => {
  let t: TestDatabase;
  let spy: WireSpy;
  beforeAll(async () => {
    t = await freshDatabase('cli_prepared');
    await t.db.query(
      `INSERT INTO baton.sagas (id, name, input, state) VALUES ('o-1', 'place-order', '{"orderId":"o-1"}', 'completed');
       INSERT INTO baton.saga_steps (saga_id, name, kind, ordinal, state, attempts, compensation_attempts, completed_at)
         VALUES ('o-1', 'create-order', 'local', 1, 'completed', 1, 0, now())`,
    );
    spy = await startWireSpy(t.url);
  });
  afterAll(async () => {
    await spy?.close();
    await t?.drop();
  });

  const show = (env: Record<string, string>) =>
    inProcess(['sagas', 'show', 'o-1', '--json'], { BATON_DATABASE_URL: spy.url, ...env });

  it('prepares Baton’s statements by default, and none with off — the same answer both ways', async () => {
    spy.prepared.length = 0;
    const prepared = await show({});
    expect(prepared.stderr).toBe('');
    expect(prepared.code).toBe(0);
    expect(spy.prepared.some((name) => /^baton_[0-9a-f]{24}$/.test(name))).toBe(true);

    spy.prepared.length = 0;
    const plain = await show({ BATON_PREPARED_STATEMENTS: 'off' });
    expect(plain.stderr).toBe('');
    expect(plain.code).toBe(0);
    expect(spy.prepared).toEqual([]);
    const detail = (run: { stdout: string }) => {
      const { id, state, steps } = JSON.parse(run.stdout) as {
        id: string;
        state: string;
        steps: { name: string; state: string }[];
      };
      return { id, state, steps: steps.map((s) => [s.name, s.state]) };
    };
    expect(detail(plain)).toEqual(detail(prepared));
    expect(detail(plain)).toEqual({
      id: 'o-1',
      state: 'completed',
      steps: [['create-order', 'completed']],
    });

    const status = await inProcess(['status', '--json'], {
      BATON_DATABASE_URL: spy.url,
      BATON_PREPARED_STATEMENTS: 'off',
    });
    expect(status.code).toBe(0);
    expect(spy.prepared).toEqual([]);
  });

  it('refuses a value other than on or off, saying what to set', async () => {
    for (const value of ['no', 'OFF', 'false', '0']) {
      const run = await show({ BATON_PREPARED_STATEMENTS: value });
      expect(run.code).toBe(EXIT_USAGE);
      expect(run.stderr).toContain('BATON_PREPARED_STATEMENTS must be "on" or "off"');
      expect(run.stderr).toContain(JSON.stringify(value));
    }
  });
});

describe('BATON_PREPARED_STATEMENTS values', () => {
  it('takes exactly on, off and empty; refuses any other text, quoting it', () => {
    expect(preparedStatementsFrom({})).toBe(true);
    expect(preparedStatementsFrom({ BATON_PREPARED_STATEMENTS: '' })).toBe(true);
    expect(preparedStatementsFrom({ BATON_PREPARED_STATEMENTS: 'on' })).toBe(true);
    expect(preparedStatementsFrom({ BATON_PREPARED_STATEMENTS: 'off' })).toBe(false);
    const near = fc.constantFrom(
      'Off',
      'OFF',
      ' off',
      'off ',
      'of',
      'offf',
      'On',
      'no',
      'false',
      '0',
    );
    fc.assert(
      fc.property(
        fc.oneof(
          near,
          fc.string({ maxLength: 60 }),
          fc.string({ unit: 'grapheme', maxLength: 20 }),
        ),
        (value) => {
          fc.pre(!['', 'on', 'off'].includes(value));
          let thrown: unknown;
          try {
            preparedStatementsFrom({ BATON_PREPARED_STATEMENTS: value });
          } catch (error) {
            thrown = error;
          }
          expect(thrown).toBeInstanceOf(UsageError);
          expect((thrown as Error).message).toContain(JSON.stringify(value.slice(0, 40)));
        },
      ),
      { numRuns: 300 },
    );
  });
});
