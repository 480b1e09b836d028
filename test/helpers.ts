import { inject } from 'vitest';
import type { Database } from '../src/db/executor.ts';
import { createTestDatabase, type TestDatabase } from '../src/testing/index.ts';

/** A fresh clone of the migrated template database. */
export function freshDatabase(prefix: string): Promise<TestDatabase> {
  return createTestDatabase(
    { adminUrl: inject('pgAdminUrl'), templateName: inject('pgTemplate') },
    prefix,
  );
}

/** Polls `check` until it returns true or `timeoutMs` passes (then throws with `what`). */
export async function eventually(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
}

export const SECRET = 'test-secret-0123456789abcdef';

/**
 * A real database with some of its methods replaced (fault injection, counting
 * statements); the rest go to `real`. Closing it leaves `real` open: the test
 * database's `drop()` closes that.
 */
export function databaseWith(real: Database, overrides: Partial<Database>): Database {
  return {
    query: (text, values) => real.query(text, values),
    transaction: (fn) => real.transaction(fn),
    listen: (channel, onNotify) => real.listen(channel, onNotify),
    close: async () => {},
    ...overrides,
  };
}

/** Retries `attempt` until it succeeds (e.g. a JetStream API call while the cluster elects its leaders), at most `timeoutMs`. */
export async function untilReady<T>(attempt: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
