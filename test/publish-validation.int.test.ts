import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  type BatonEvent,
  createBaton,
  type EventInput,
  httpFeedSource,
  InvalidInputError,
  PayloadTooLargeError,
  SchemaViolationError,
  serveHttp,
} from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { eventually, freshDatabase, SECRET } from './helpers.ts';

const MAX_PAYLOAD = 1024;
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

let database: TestDatabase;
const baton = () =>
  createBaton({
    db: database.db,
    service: 'orders',
    maxPayloadBytes: MAX_PAYLOAD,
    events: {
      'order.placed': z.object({ id: z.string(), total: z.number().int().nonnegative() }),
    },
  });

beforeAll(async () => {
  database = await freshDatabase('publish_validation');
  await database.db.query('CREATE TABLE orders (id text PRIMARY KEY)');
});
afterAll(async () => {
  await database?.drop();
});

async function count(table: string): Promise<number> {
  const r = await database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return r.rows[0]?.n ?? -1;
}

/**
 * Publishes inside a business transaction that also inserts an order; the
 * caller catches the error and commits. Returns the error, after checking
 * that the order committed and Baton wrote nothing at all.
 */
async function refused(events: unknown, b = baton()): Promise<Error> {
  const orderId = `order-${Math.random()}`;
  const before = {
    outbox: await count('baton.outbox'),
    versions: await count('baton.stream_versions'),
  };
  const error = await database.db.transaction(async (tx) => {
    await tx.query('INSERT INTO orders (id) VALUES ($1)', [orderId]);
    try {
      await b.publish(tx, events as EventInput[]);
    } catch (e) {
      return e as Error;
    }
    throw new Error('publish accepted an invalid event');
  });
  const order = await database.db.query('SELECT 1 FROM orders WHERE id = $1', [orderId]);
  expect(order.rows, 'the caller’s own row committed').toHaveLength(1);
  expect(await count('baton.outbox'), 'no outbox row').toBe(before.outbox);
  expect(await count('baton.stream_versions'), 'no version taken').toBe(before.versions);
  return error;
}

const ownKey = (key: string, value: unknown) => {
  const o: Record<string, unknown> = { ok: 1 };
  Object.defineProperty(o, key, { value, enumerable: true, configurable: true, writable: true });
  return o;
};

describe('publish refuses invalid events with a typed error and writes nothing', () => {
  it('starts from an empty outbox', async () => {
    expect(await count('baton.outbox')).toBe(0);
  });

  it('SchemaViolationError for a payload failing its zod schema', async () => {
    const error = await refused([
      { type: 'order.placed', key: 'o1', payload: { id: 'o1', total: -5 } },
    ]);
    expect(error).toBeInstanceOf(SchemaViolationError);
    expect(error).toMatchObject({ code: 'BATON_SCHEMA_VIOLATION', eventType: 'order.placed' });
    expect(error.message).toMatch(/payload of event type "order.placed" fails its schema: total: /);
    const missing = await refused({ type: 'order.placed', key: 'o1', payload: { id: 'o1' } });
    expect(missing.message).toMatch(/fails its schema: total: /);
  });

  it('PayloadTooLargeError for a payload over maxPayloadBytes', async () => {
    const error = await refused([
      { type: 'note.added', key: 'n1', payload: { text: 'x'.repeat(MAX_PAYLOAD) } },
    ]);
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect(error).toMatchObject({ limitBytes: MAX_PAYLOAD, bytes: MAX_PAYLOAD + 11 });
    expect(error.message).toMatch(/is 1035 bytes, over the limit of 1024/);
    // Multi-byte characters count as bytes, not characters.
    const wide = await refused([{ type: 'note.added', key: 'n1', payload: '€'.repeat(400) }]);
    expect(wide).toBeInstanceOf(PayloadTooLargeError);
  });

  it.each<[string, unknown, RegExp]>([
    ['a NUL in the payload', { s: 'a\u0000b' }, /\$\.s: string contains a NUL character/],
    ['a lone surrogate in the payload', { s: 'x\ud800' }, /unpaired UTF-16 surrogate/],
    [
      'an own "__proto__" key',
      ownKey('__proto__', { admin: true }),
      /key "__proto__" is not allowed/,
    ],
    ['a "constructor" key', { a: { constructor: 1 } }, /\$\.a: key "constructor" is not allowed/],
    ['an unsafe integer', { n: 2 ** 53 + 2 }, /\$\.n: integer 9007199254740994 is beyond 2\^53/],
    ['a BigInt', { n: 10n }, /\$\.n: a bigint is not JSON/],
    ['NaN', [Number.NaN], /NaN is not a JSON number/],
    ['a Date object', { at: new Date(0) }, /Date is not a plain JSON object/],
    ['a function', { f: () => 1 }, /a function is not JSON/],
    ['undefined inside an array', [1, undefined], /\$\[1\]: a undefined is not JSON/],
  ])('InvalidInputError for %s', async (_what, payload, reason) => {
    const error = await refused([{ type: 'note.added', key: 'n1', payload }]);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect(error.message).toMatch(/event #0 \(note.added\): payload is not safe JSON: /);
    expect(error.message).toMatch(reason);
  });

  it.each<[string, unknown]>([
    ['empty', ''],
    ['starting with a digit', '1order'],
    ['with a space', 'order placed'],
    ['too long', `a${'b'.repeat(200)}`],
    ['not a string', 42],
    ['missing', undefined],
  ])('InvalidInputError for a type that is %s', async (_what, type) => {
    const error = await refused([{ type, key: 'k', payload: {} }]);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect(error.message).toMatch(/event #0: type .* is not valid: use 1–200 letters/);
  });

  it.each<[string, unknown, RegExp]>([
    ['empty', '', /got a string of 0 characters/],
    ['too long', 'k'.repeat(513), /got a string of 513 characters/],
    ['holding a NUL', 'a\u0000b', /without NUL/],
    ['a number', 7, /got number/],
    ['null', null, /got null/],
  ])('InvalidInputError for a key that is %s', async (_what, key, detail) => {
    const error = await refused([{ type: 'note.added', key, payload: {} }]);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect(error.message).toMatch(/key must be a non-empty string of at most 512 characters/);
    expect(error.message).toMatch(detail);
  });

  it('InvalidInputError for a key holding a lone surrogate (PostgreSQL could not store it)', async () => {
    const error = await refused([{ type: 'note.added', key: 'a\ud800', payload: {} }]);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect(error.message).toMatch(
      /key must be a non-empty string .* without NUL or unpaired surrogates/,
    );
  });

  it.each<[string, unknown, RegExp]>([
    [
      'a garbage traceparent',
      { traceparent: 'garbage' },
      /traceparent "garbage" is not a W3C trace context header/,
    ],
    [
      'an upper-case traceparent',
      { traceparent: TRACEPARENT.toUpperCase() },
      /is not a W3C trace context/,
    ],
    [
      'a traceparent missing its flags',
      { traceparent: TRACEPARENT.slice(0, -3) },
      /is not a W3C trace context/,
    ],
    [
      'a header that is not a string',
      { retries: 3 },
      /header "retries" must be a string without NUL/,
    ],
    ['a NUL in a header value', { note: 'a\u0000b' }, /header "note" must be a string without NUL/],
    ['a NUL in a header name', { 'a\u0000b': 'x' }, /must be a string without NUL/],
    [
      'a lone surrogate in a header value',
      { note: '\udc00' },
      /header "note" is not allowed: .*unpaired UTF-16 surrogate/,
    ],
    [
      'a "__proto__" header',
      JSON.parse('{"__proto__":"x"}'),
      /header "__proto__" is not allowed: .*prototype pollution/,
    ],
    ['a "Constructor" header', { Constructor: 'x' }, /header "Constructor" is not allowed/],
    ['headers that are not an object', 'traceparent', /headers must be an object of strings/],
    ['headers over 8 KiB', { big: 'x'.repeat(9000) }, /headers exceed 8192 bytes/],
  ])('InvalidInputError for %s', async (_what, headers, reason) => {
    const error = await refused([{ type: 'note.added', key: 'n1', payload: {}, headers }]);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect(error.message).toMatch(reason);
  });

  it.each<[string, unknown]>([
    ['an invalid Date', new Date('nope')],
    ['a string', '2026-01-01'],
    ['a year PostgreSQL cannot store', new Date(-8.64e15)],
    ['a five-digit year', new Date(Date.UTC(10_000, 0, 1))],
  ])('InvalidInputError for occurredAt that is %s', async (_what, occurredAt) => {
    const error = await refused([{ type: 'note.added', key: 'n1', payload: {}, occurredAt }]);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect(error.message).toMatch(/occurredAt must be a valid Date in the years 1 to 9999/);
  });

  it('InvalidInputError for an event that is not an object', async () => {
    for (const event of [null, 'order.placed', 42]) {
      const error = await refused([event]);
      expect(error).toBeInstanceOf(InvalidInputError);
      expect(error.message).toMatch(/event #0 is not an object/);
    }
  });

  it('InvalidInputError for a type without a schema when strictTypes is on', async () => {
    const strict = createBaton({
      db: database.db,
      service: 'orders',
      strictTypes: true,
      events: { 'order.placed': z.object({ id: z.string() }) },
    });
    const error = await refused([{ type: 'note.added', key: 'n1', payload: {} }], strict);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect(error.message).toMatch(
      /event type "note.added" has no registered schema and strictTypes is on/,
    );
  });

  it('writes none of a batch when one event in it is invalid, and names which', async () => {
    const error = await refused([
      { type: 'note.added', key: 'n1', payload: { i: 0 } },
      { type: 'note.added', key: 'n2', payload: { i: 1 } },
      { type: 'note.added', key: 'n3', payload: { i: 2n } },
      { type: 'note.added', key: 'n4', payload: { i: 3 } },
    ]);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect(error.message).toMatch(/^event #2 \(note.added\)/);
  });
});

describe('publish of valid events', () => {
  it('numbers several events of one key consecutively, in the order given', async () => {
    const b = baton();
    const keys = ['ka', 'kb', 'ka', 'ka', 'kc', 'kb', 'ka'];
    const published = await database.db.transaction((tx) =>
      b.publish(
        tx,
        keys.map((key, i) => ({ type: 'note.added', key, payload: { i } })),
      ),
    );
    expect(published.map((e) => `${e.key}@${e.version}`)).toEqual([
      'ka@1',
      'kb@1',
      'ka@2',
      'ka@3',
      'kc@1',
      'kb@2',
      'ka@4',
    ]);
    expect(published.map((e) => (e.payload as { i: number }).i)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    const rows = await database.db.query<{ key: string; version: string; i: number; id: string }>(
      `SELECT key, version, (payload->>'i')::int AS i, event_id::text AS id FROM baton.outbox
       WHERE key IN ('ka', 'kb', 'kc') ORDER BY id`,
    );
    expect(rows.rows.map((r) => `${r.key}@${r.version}#${r.i}`)).toEqual(
      published.map((e) => `${e.key}@${e.version}#${(e.payload as { i: number }).i}`),
    );
    expect(rows.rows.map((r) => r.id)).toEqual(published.map((e) => e.id));
    // The next publish of a key continues after the last version.
    const [next] = await database.db.transaction((tx) =>
      b.publish(tx, [{ type: 'note.added', key: 'ka', payload: { i: 7 } }]),
    );
    expect(next?.version).toBe(5);
  });

  it('accepts what lies just inside the limits', async () => {
    const b = baton();
    const edges: EventInput[] = [
      { type: 'note.added', key: '🔑 key', payload: { s: '😀', n: Number.MAX_SAFE_INTEGER } },
      { type: 'note.added', key: 'k'.repeat(512), payload: 'x'.repeat(MAX_PAYLOAD - 2) },
      {
        type: 'note.added',
        key: 'old',
        payload: null,
        occurredAt: new Date('0001-01-01T00:00:00Z'),
      },
      {
        type: 'note.added',
        key: 'late',
        payload: [],
        occurredAt: new Date('9999-12-31T23:59:59Z'),
      },
      { type: `a${'b'.repeat(199)}`, key: 'long-type', payload: {}, headers: { 'x-note': 'ok' } },
    ];
    const published = await database.db.transaction((tx) => b.publish(tx, edges));
    expect(published).toHaveLength(edges.length);
    const rows = await database.db.query<{ key: string; at: string }>(
      `SELECT key, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS at FROM baton.outbox
       WHERE event_id = ANY($1::uuid[])`,
      [published.map((e) => e.id)],
    );
    const at = new Map(rows.rows.map((r) => [r.key, r.at]));
    expect(at.get('old')).toBe('0001-01-01');
    expect(at.get('late')).toBe('9999-12-31');
    expect(at.has('🔑 key')).toBe(true);
  });

  it('passes the schema’s output through and a valid traceparent unchanged to the consumer', async () => {
    const consumerDb = await freshDatabase('publish_validation_consumer');
    const producer = baton();
    const feed = producer.feedHandler({ auth: { type: 'hmac', secrets: [SECRET] } });
    const server = await serveHttp((req, signal) => feed.handle(req, signal));
    const received: BatonEvent[] = [];
    const consumer = createBaton({ db: consumerDb.db, service: 'billing' })
      .consumer({
        name: 'billing-from-orders',
        source: httpFeedSource({
          name: 'orders',
          url: `${server.url}/baton`,
          auth: { type: 'hmac', secret: SECRET },
        }),
        fetchWaitMs: 200,
      })
      .subscribe('order.placed', async (event) => {
        received.push(event);
      });
    try {
      const [sent] = await database.db.transaction((tx) =>
        producer.publish(tx, {
          type: 'order.placed',
          key: 'o-trace',
          payload: { id: 'o-trace', total: 12 },
          headers: { TraceParent: TRACEPARENT, tracestate: 'vendor=abc,other=1' },
        }),
      );
      expect(sent?.headers).toEqual({ traceparent: TRACEPARENT, tracestate: 'vendor=abc,other=1' });
      await producer.relay().runOnce();
      await consumer.start();
      await eventually(async () => received.length === 1, 'the traced event handled');
      expect(received[0]?.id).toBe(sent?.id);
      expect(received[0]?.headers.traceparent).toBe(TRACEPARENT);
      expect(received[0]?.headers).toEqual({
        traceparent: TRACEPARENT,
        tracestate: 'vendor=abc,other=1',
      });
      expect(received[0]?.payload).toEqual({ id: 'o-trace', total: 12 });
    } finally {
      await consumer.stop();
      await feed.close();
      await server.close();
      await consumerDb.drop();
    }
  });
});
