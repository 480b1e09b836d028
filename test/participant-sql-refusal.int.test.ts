import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Baton, createBaton } from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/**
 * A participant's handler whose SQL refuses the caller's values answers a
 * 4xx the caller does not retry (security review, item 12) — a bad number, a
 * value past its column, a CHECK, a foreign key — while what a retry can
 * mend (a unique violation from a concurrent writer) stays retryable, and
 * nothing of the refused call is kept.
 */

let t: TestDatabase;
let baton: Baton;

beforeAll(async () => {
  t = await freshDatabase('participant_sql');
  await t.db.query(`CREATE TABLE accounts (id text PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0));
    CREATE TABLE notes (id serial PRIMARY KEY, account text REFERENCES accounts (id), note varchar(5));
    INSERT INTO accounts VALUES ('ada', 10)`);
  baton = createBaton({ db: t.db, service: 'loyalty' });
  baton.participant.action<{ sql: string; values: unknown[] }, null>('run', {
    run: async (tx, body) => {
      await tx.query(body.sql, body.values);
      return null;
    },
  });
});
afterAll(async () => {
  await t?.drop();
});

const act = (key: string, sql: string, values: unknown[]) =>
  baton.participant.act('run', key, { sql, values });

describe("a participant handler's SQL refusing the input", () => {
  it.each([
    ['a value that is not a number', 'SELECT $1::int', ['ten']],
    ['a value past its column', 'INSERT INTO notes (note) VALUES ($1)', ['far too long']],
    ['a CHECK', 'UPDATE accounts SET balance = balance - $1 WHERE id = $2', [50, 'ada']],
    ['a foreign key', 'INSERT INTO notes (account) VALUES ($1)', ['nobody']],
    ['a NOT NULL', 'INSERT INTO accounts VALUES ($1, NULL)', ['bob']],
  ])('%s is a 422, not a retryable 5xx', async (_what, sql, values) => {
    const answer = await act(`k-${_what}`, sql, values);
    expect(answer.status).toBe(422);
    expect(String(answer.body)).toMatch(/SQLSTATE 2[23]/);
  });

  it('a unique violation stays retryable (a concurrent writer may have caused it)', async () => {
    await expect(
      act('k-unique', 'INSERT INTO accounts VALUES ($1, 1)', ['ada']),
    ).rejects.toMatchObject({
      code: '23505',
    });
  });

  it('keeps nothing of a refused call: the same key runs again once fixed', async () => {
    expect((await act('k-again', 'SELECT $1::int', ['x'])).status).toBe(422);
    expect((await act('k-again', 'SELECT $1::int', ['7'])).status).toBe(200);
  });
});
