import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type BatonEvent,
  createBaton,
  type EventSource,
  type FetchedBatch,
  TerminalError,
} from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/*
 * The consumer's fast path: a fetched batch's events are handled in the
 * transaction that stores them, when their key has nothing waiting. Driven
 * step by step (fetchOnce, handleBatch) from a scripted source, so each
 * test sees exactly which events took which path; effects are counted in
 * the same database.
 */

let t: TestDatabase;
let seq = 0;
let uuid = 0;

function event(key: string, type = 'thing.happened', payload: unknown = {}): BatonEvent {
  uuid++;
  return {
    id: `00000000-0000-7000-8000-${uuid.toString().padStart(12, '0')}`,
    type,
    key,
    version: uuid,
    payload,
    headers: {},
    occurredAt: '2026-12-02T20:00:00.000+00:00',
    source: 'producer',
  };
}

/**
 * Hands out the scripted batches in turn to the test's own `fetchOnce(0)`;
 * positions continue across batches. The consumer's loop (which long-polls)
 * gets nothing until it is stopped, so only the test moves the cursor.
 */
function scripted(batches: BatonEvent[][]): EventSource {
  let next = 0;
  return {
    name: 'producer',
    async fetch(request): Promise<FetchedBatch> {
      if (request.waitMs > 0) {
        if (!request.signal.aborted)
          await new Promise((resolve) => request.signal.addEventListener('abort', resolve));
        return { items: [], cursor: request.cursor ?? '0' };
      }
      const events = batches[next++] ?? [];
      const items = events.map((e) => ({ position: String(++seq), event: e }));
      return { items, cursor: items.at(-1)?.position ?? request.cursor ?? '0' };
    },
  };
}

async function effects(): Promise<string[]> {
  const r = await t.db.query<{ key: string; n: number }>(
    'SELECT key, n FROM effects ORDER BY at, key',
  );
  return r.rows.map((row) => `${row.key}×${row.n}`);
}

async function inbox(): Promise<string[]> {
  const r = await t.db.query<{ key: string; status: string }>(
    `SELECT key, status FROM baton.inbox WHERE subscription = 'fast' ORDER BY id`,
  );
  return r.rows.map((row) => `${row.key}:${row.status}`);
}

/** A consumer whose handler counts each event's effect and fails for the keys in `failing`. */
function consumer(source: EventSource, failing: Set<string>, options = {}) {
  const baton = createBaton({ db: t.db, service: 'consumer' });
  return baton
    .consumer({
      name: 'fast',
      source,
      // no worker loops: the test hands events to the workers' code itself
      concurrency: 0,
      maxAttempts: 2,
      backoff: { baseMs: 1, maxMs: 1 },
      ...options,
    })
    .subscribe('thing.happened', async (e, tx) => {
      await tx.query(
        `INSERT INTO effects (key, event_id) VALUES ($1, $2)
         ON CONFLICT (event_id) DO UPDATE SET n = effects.n + 1`,
        [e.key, e.id],
      );
      if (failing.has(e.key)) throw new TerminalError(`${e.key} cannot be handled`);
    });
}

beforeAll(async () => {
  t = await freshDatabase('handle_on_ingest');
  await t.db.query(
    `CREATE TABLE effects (event_id uuid PRIMARY KEY, key text NOT NULL, n int NOT NULL DEFAULT 1,
       at timestamptz NOT NULL DEFAULT clock_timestamp())`,
  );
});
beforeEach(async () => {
  await t.db.query('TRUNCATE effects, baton.inbox, baton.subscriptions CASCADE');
});
afterAll(async () => {
  await t?.drop();
});

describe('handling on ingest', () => {
  it('handles a batch in the transaction that stores it: every entry handled, no worker needed', async () => {
    const c = consumer(scripted([[event('a'), event('b'), event('a')]]), new Set());
    await c.start();
    await c.stop();
    expect(await c.fetchOnce(0)).toBe(3);
    expect(await inbox()).toEqual(['a:handled', 'b:handled', 'a:handled']);
    expect(await effects()).toEqual(['a×1', 'b×1', 'a×1']);
    expect(await c.handleBatch()).toBe(0);
  });

  it('one failing handler: nothing of the batch applied on ingest; the workers handle each once, the failing one ends dead', async () => {
    const c = consumer(scripted([[event('a'), event('bad'), event('c')]]), new Set(['bad']));
    await c.start();
    await c.stop();
    await c.fetchOnce(0);
    expect(await effects()).toEqual([]);
    expect(await inbox()).toEqual(['a:pending', 'bad:pending', 'c:pending']);
    // the fast path handles a batch whole; its failure sends the workers one at a time
    await expect(c.handleBatch()).rejects.toThrow(/bad cannot be handled/);
    for (let i = 0; i < 3; i++) await c.handleOneCarefully();
    expect(await inbox()).toEqual(['a:handled', 'bad:dead', 'c:handled']);
    expect((await effects()).sort()).toEqual(['a×1', 'c×1']);
  });

  it('a key with an entry waiting is not handled on ingest — later events keep their order behind it', async () => {
    const failing = new Set(['k']);
    const c = consumer(scripted([[event('k')], [event('k'), event('other'), event('k')]]), failing);
    await c.start();
    await c.stop();
    await c.fetchOnce(0); // k's first event fails on ingest, waits as pending
    expect(await inbox()).toEqual(['k:pending']);
    await c.fetchOnce(0);
    // 'other' is handled now; k's later events wait behind its first
    expect(await inbox()).toEqual(['k:pending', 'k:pending', 'other:handled', 'k:pending']);
    expect(await effects()).toEqual(['other×1']);
    failing.clear();
    for (let i = 0; i < 3; i++) await c.handleOneCarefully();
    expect(await inbox()).toEqual(['k:handled', 'k:handled', 'other:handled', 'k:handled']);
    const order = await t.db.query<{ event_id: string }>(
      `SELECT event_id::text FROM effects WHERE key = 'k' ORDER BY at`,
    );
    const ids = order.rows.map((r) => r.event_id);
    expect(ids).toEqual([...ids].sort());
  });

  it('an event of an unknown type (dead on arrival) blocks the later events of its key in the same batch', async () => {
    const c = consumer(
      scripted([[event('k', 'other.type'), event('k'), event('free')]]),
      new Set(),
    );
    await c.start();
    await c.stop();
    await c.fetchOnce(0);
    expect(await inbox()).toEqual(['k:dead', 'k:pending', 'free:handled']);
    expect(await effects()).toEqual(['free×1']);
  });

  it('an event delivered again (the feed re-read from an older cursor) is not handled again', async () => {
    const first = event('a');
    const again = { ...first };
    const c = consumer(scripted([[first], [again, event('b')]]), new Set());
    await c.start();
    await c.stop();
    await c.fetchOnce(0);
    await c.fetchOnce(0);
    expect(await inbox()).toEqual(['a:handled', 'b:handled']);
    expect(await effects()).toEqual(['a×1', 'b×1']);
  });

  it('the same event twice in one batch is handled once', async () => {
    const twice = event('a');
    const c = consumer(scripted([[twice, { ...twice }, event('b')]]), new Set());
    await c.start();
    await c.stop();
    await c.fetchOnce(0);
    expect(await inbox()).toEqual(['a:handled', 'b:handled']);
    expect(await effects()).toEqual(['a×1', 'b×1']);
  });

  it('handleOnIngest: false stores everything for the workers', async () => {
    const c = consumer(scripted([[event('a'), event('b')]]), new Set(), { handleOnIngest: false });
    await c.start();
    await c.stop();
    await c.fetchOnce(0);
    expect(await inbox()).toEqual(['a:pending', 'b:pending']);
    expect(await c.handleBatch()).toBe(2);
    expect(await effects()).toEqual(['a×1', 'b×1']);
  });
});
