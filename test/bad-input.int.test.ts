import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  authHeaders,
  type Baton,
  type Consumer,
  createBaton,
  type DeadLetterMode,
  type FeedHandler,
  httpFeedSource,
  type RunningServer,
  serveHttp,
} from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { eventually, freshDatabase, SECRET } from './helpers.ts';
import { type HostileFeed, lineWith, startHostileFeed, wireEvent } from './support/hostile-feed.ts';

const MAX_EVENT_BYTES = 4096;
const itemSchema = z.object({ n: z.number() });

interface InboxRow {
  position: string;
  key: string;
  type: string | null;
  status: string;
  attempts: number;
  last_error: string | null;
  raw: string | null;
}

describe('a consumer reading a hostile producer', () => {
  let database: TestDatabase;
  let feed: HostileFeed;
  let consumer: Consumer;

  async function inbox(subscription = 'from-hostile'): Promise<InboxRow[]> {
    const r = await database.db.query<InboxRow>(
      `SELECT position, key, type, status, attempts, last_error, raw FROM baton.inbox
       WHERE subscription = $1 ORDER BY id`,
      [subscription],
    );
    return r.rows;
  }

  async function seen(subscription = 'from-hostile'): Promise<string[]> {
    const r = await database.db.query<{ k: string }>(
      `SELECT key || '@' || version AS k FROM seen WHERE subscription = $1`,
      [subscription],
    );
    return r.rows.map((x) => x.k).sort();
  }

  async function cursor(subscription = 'from-hostile'): Promise<string | null> {
    const r = await database.db.query<{ cursor: string | null }>(
      'SELECT cursor FROM baton.subscriptions WHERE name = $1',
      [subscription],
    );
    return r.rows[0]?.cursor ?? null;
  }

  function makeConsumer(
    baton: Baton,
    name: string,
    options: { onDeadLetter?: DeadLetterMode; maxAttempts?: number } = {},
    from: HostileFeed = feed,
  ): Consumer {
    const record = async (
      event: { key: string; version: number },
      tx: { query: (t: string, v: unknown[]) => Promise<unknown> },
      ctx: { subscription: string },
    ) => {
      await tx.query('INSERT INTO seen (subscription, key, version) VALUES ($1, $2, $3)', [
        ctx.subscription,
        event.key,
        event.version,
      ]);
    };
    return baton
      .consumer({
        name,
        source: httpFeedSource({
          name: 'hostile',
          url: from.url,
          auth: { type: 'hmac', secret: SECRET },
          maxEventBytes: MAX_EVENT_BYTES,
        }),
        fetchWaitMs: 100,
        maxAttempts: options.maxAttempts ?? 3,
        backoff: { baseMs: 10, maxMs: 20 },
        onDeadLetter: options.onDeadLetter,
      })
      .subscribe('item.ok', record, { schema: itemSchema })
      .subscribe('item.boom', async (event) => {
        throw new Error(`the boom handler refuses ${event.key}@${event.version}`);
      });
  }

  beforeAll(async () => {
    database = await freshDatabase('bad_input_consumer');
    await database.db.query(
      'CREATE TABLE seen (subscription text, key text, version int, PRIMARY KEY (subscription, key, version))',
    );
    feed = await startHostileFeed();
  });
  afterAll(async () => {
    await consumer?.stop();
    await feed?.close();
    await database?.drop();
  });

  it('turns every bad line into a dead letter with its reason and keeps handling the rest', async () => {
    const ok = (seq: number, key: string, version = 1) =>
      JSON.stringify(wireEvent(seq, key, 'item.ok', { n: seq }, { version }));
    const replayedId = '01900000-0000-7000-8000-000000000001';
    // Batch 0: good events around every kind of bad one.
    feed.push([
      ok(1, 'k1'),
      '{"seq":2,"id":"01900000-0000-7000-8000-00000000000', // cut off: malformed JSON
      JSON.stringify(wireEvent(3, 'k3', 'item.unknown', { n: 3 })),
      JSON.stringify(wireEvent(4, 'k4', 'item.ok', { n: 'four' })),
      JSON.stringify(wireEvent(5, 'k5', 'item.ok', { n: 5, s: 'a\u0000b' })),
      JSON.stringify(wireEvent(6, 'k6', 'item.ok', { n: 6, blob: 'x'.repeat(MAX_EVENT_BYTES) })),
      lineWith(wireEvent(7, 'k7', 'item.ok', 'PAYLOAD'), {
        PAYLOAD: '{"n":7,"__proto__":{"admin":true}}',
      }),
      JSON.stringify(wireEvent(8, 'k8', 'item.ok', { n: 8, constructor: { prototype: { x: 1 } } })),
      lineWith(wireEvent(9, 'k9', 'item.ok', 'PAYLOAD'), { PAYLOAD: '{"n":9007199254740993}' }),
      lineWith(wireEvent(10, 'k10', 'item.ok', 'PAYLOAD'), { PAYLOAD: '{"n":10,"s":"\\ud800"}' }),
      JSON.stringify(wireEvent(11, 'k11', 'item.ok', { n: 11 }, { id: undefined })),
      JSON.stringify(wireEvent(12, 'k12', 'item.ok', { n: 12 }, { version: '1' })),
      JSON.stringify(wireEvent(13, 'k13', 'item.ok', { n: 13 }, { headers: { retries: 3 } })),
      // Date.parse accepts "1", PostgreSQL's timestamptz does not: refused at insert.
      JSON.stringify(wireEvent(14, 'k14', 'item.ok', { n: 14 }, { occurredAt: '1' })),
      ok(15, 'k15'),
      lineWith(wireEvent(16, 'k16', 'item.ok', { n: 16 }, { headers: 'HEADERS' }), {
        HEADERS: '{"__proto__":"x"}',
      }),
      '[1,2,3]',
      `{"seq":18,"key":"k18","payload":{"s":"raw\u0000nul"}}`, // a raw NUL: not even JSON
      JSON.stringify(wireEvent(19, 'k19', 'item.ok', { n: 19 }, { key: '' })),
      JSON.stringify(wireEvent(20, 'k20', 'item.ok', { n: 20 }, { occurredAt: 'not a date' })),
      JSON.stringify(wireEvent(21, 'k21', 'item.ok', { n: 21 }, { id: replayedId })),
    ]);
    consumer = makeConsumer(createBaton({ db: database.db, service: 'orders' }), 'from-hostile');
    await consumer.start();

    await eventually(async () => (await seen()).length === 3, 'the three good events handled');
    expect(await seen()).toEqual(['k15@1', 'k1@1', 'k21@1']);
    await eventually(
      async () => (await inbox()).every((r) => r.status !== 'pending'),
      'no entry left pending',
    );

    const rows = await inbox();
    const byPosition = new Map(rows.map((r) => [r.position, r]));
    const expectDead = (position: string, reason: RegExp) => {
      const row = byPosition.get(position);
      expect(row, `inbox row at position ${position}`).toBeDefined();
      expect(row?.status, `status at ${position}`).toBe('dead');
      expect(row?.last_error, `last_error at ${position}`).toMatch(reason);
    };
    expectDead('0+line2', /malformed JSON/);
    expectDead('3', /no handler for event type "item.unknown"/);
    expectDead('4', /fails its schema: n: .*\(dead after 1 attempt\)/);
    expectDead('5', /unsafe JSON: \$\.payload\.s: string contains a NUL character/);
    expectDead('0+line6', /event is \d+ bytes, over this consumer's limit of 4096/);
    expectDead('7', /unsafe JSON: \$\.payload: key "__proto__" is not allowed/);
    expectDead('8', /unsafe JSON: \$\.payload: key "constructor" is not allowed/);
    expectDead('9', /unsafe JSON: \$\.payload\.n: integer 9007199254740992 is beyond 2\^53/);
    expectDead('10', /unsafe JSON: \$\.payload\.s: string contains an unpaired UTF-16 surrogate/);
    expectDead('11', /envelope: "id" must be a UUID/);
    expectDead('12', /envelope: "version" must be a positive integer/);
    expectDead('13', /envelope: header values must be strings/);
    expectDead('14', /database refused the event: .*timestamp/);
    expectDead('16', /unsafe JSON: \$\.headers: key "__proto__" is not allowed/);
    expectDead('0+line17', /event line is not a JSON object/);
    expectDead('0+line18', /malformed JSON/);
    expectDead('19', /envelope: "key" must be a non-empty string/);
    expectDead('20', /envelope: "occurredAt" must be an ISO date/);
    expect(rows.filter((r) => r.status === 'dead')).toHaveLength(18);
    expect(rows.filter((r) => r.status === 'handled').map((r) => r.position)).toEqual([
      '1',
      '15',
      '21',
    ]);
    // The raw text of what could not be decoded is kept for the operator (NUL made visible).
    expect(byPosition.get('0+line18')?.raw).toContain('raw\\u0000nul');
    expect(byPosition.get('0+line2')?.raw).toContain('"seq":2');
    expect(await cursor()).toBe('1');
    expect(({} as Record<string, unknown>).admin).toBeUndefined();

    // Batch 1: more bad lines, a replay of an event already handled, and good
    // events on a key seen before and on new keys.
    feed.push([
      'not json at all',
      ok(22, 'k1', 2),
      JSON.stringify(wireEvent(21, 'k21', 'item.ok', { n: 21 }, { id: replayedId })),
      lineWith(wireEvent(23, 'k23', 'item.ok', 'PAYLOAD'), { PAYLOAD: '[-9007199254740993]' }),
      ok(24, 'k24'),
      '',
      JSON.stringify(wireEvent(25, 'k25', 'item.elsewhere', { n: 25 })),
    ]);
    await eventually(async () => (await seen()).length === 5, 'the second batch handled');
    expect(await seen()).toEqual(['k15@1', 'k1@1', 'k1@2', 'k21@1', 'k24@1']);
    await eventually(async () => (await cursor()) === '2', 'the cursor moved past batch 1');
    const later = new Map((await inbox()).map((r) => [r.position, r]));
    expect(later.get('1+line1')).toMatchObject({
      status: 'dead',
      last_error: expect.stringMatching(/malformed JSON/),
    });
    expect(later.get('23')).toMatchObject({
      status: 'dead',
      last_error: expect.stringMatching(/beyond 2\^53/),
    });
    expect(later.get('25')).toMatchObject({
      status: 'dead',
      last_error: expect.stringMatching(/no handler/),
    });
    // The replayed event id was deduplicated, not handled twice.
    expect((await inbox()).filter((r) => r.key === 'k21')).toHaveLength(1);

    // Batch 2: the consumer is still alive and keeps going.
    // … including a line of invalid UTF-8 (a lone 0xFF byte), which must not be silently repaired.
    const line = JSON.stringify(wireEvent(28, 'k28', 'item.ok', { s: 'A?B' }));
    const at = line.indexOf('A?B') + 1;
    const withByte = Buffer.concat([
      Buffer.from(line.slice(0, at)),
      Buffer.from([0xff]),
      Buffer.from(line.slice(at + 1)),
    ]);
    feed.push([ok(26, 'k26'), withByte, ok(27, 'k1', 3)]);
    await eventually(async () => (await seen()).includes('k26@1'), 'a later batch handled');
    await eventually(async () => (await seen()).includes('k1@3'), 'k1 version 3 handled');
    await eventually(async () => (await cursor()) === '3', 'the cursor moved past batch 2');
    // Each batch was fetched once per cursor position: the consumer never got stuck re-reading one.
    expect(feed.served.get('0')).toBe(1);
    expect(feed.served.get('1')).toBe(1);
    expect(feed.served.get('2')).toBe(1);
    const last = new Map((await inbox()).map((r) => [r.position, r]));
    expect(last.get('2+line2')).toMatchObject({
      status: 'dead',
      last_error: 'event line is not valid UTF-8',
    });
  });

  it('retries a failing handler, then keeps it dead; only its key waits (block-key), or not (skip)', async () => {
    const baton = createBaton({ db: database.db, service: 'orders' });
    const failing = await startHostileFeed();
    const consumers: Consumer[] = [];
    try {
      failing.push([
        JSON.stringify(wireEvent(1, 'kb', 'item.boom', { n: 1 })),
        JSON.stringify(wireEvent(2, 'kb', 'item.ok', { n: 2 }, { version: 2 })),
        JSON.stringify(wireEvent(3, 'kg', 'item.ok', { n: 3 })),
      ]);
      for (const [name, mode] of [
        ['boom-block', 'block-key'],
        ['boom-skip', 'skip'],
      ] as const) {
        const c = makeConsumer(baton, name, { onDeadLetter: mode, maxAttempts: 3 }, failing);
        consumers.push(c);
        await c.start();
      }
      for (const name of ['boom-block', 'boom-skip']) {
        await eventually(
          async () =>
            (await inbox(name)).find((r) => r.key === 'kb' && r.type === 'item.boom')?.status ===
            'dead',
          `${name}: the failing event is dead`,
        );
        const dead = (await inbox(name)).find((r) => r.type === 'item.boom');
        expect(dead?.attempts).toBe(3);
        expect(dead?.last_error).toBe(
          'Error: the boom handler refuses kb@1 (dead after 3 attempts)',
        );
        await eventually(
          async () => (await seen(name)).includes('kg@1'),
          `${name}: other key handled`,
        );
      }
      // skip: the dead letter is set aside and the key's next event goes on.
      await eventually(
        async () => (await seen('boom-skip')).includes('kb@2'),
        'skip: kb@2 handled',
      );

      // block-key: prove kb@2 is held back, not merely slow: a later event on
      // another key gets handled while kb@2 (older, same handler) stays pending.
      failing.push([JSON.stringify(wireEvent(4, 'kh', 'item.ok', { n: 4 }))]);
      await eventually(
        async () => (await seen('boom-block')).includes('kh@1'),
        'block: kh handled',
      );
      expect(await seen('boom-block')).toEqual(['kg@1', 'kh@1']);
      const waiting = (await inbox('boom-block')).find(
        (r) => r.key === 'kb' && r.type === 'item.ok',
      );
      expect(waiting).toMatchObject({ status: 'pending', attempts: 0, last_error: null });
    } finally {
      for (const c of consumers) await c.stop();
      await failing.close();
    }
  });
});

describe('the feed endpoint given bad requests', () => {
  const MAX_BODY = 1024;
  let database: TestDatabase;
  let producer: Baton;
  let handler: FeedHandler;
  let server: RunningServer;

  beforeAll(async () => {
    database = await freshDatabase('bad_input_feed');
    producer = createBaton({ db: database.db, service: 'customers' });
    await database.db.transaction((tx) =>
      producer.publish(
        tx,
        [1, 2, 3, 4].map((i) => ({ type: 'customer.registered', key: `c${i}`, payload: { i } })),
      ),
    );
    expect(await producer.relay().runOnce()).toBe(4);
    handler = producer.feedHandler({ auth: { type: 'hmac', secrets: [SECRET] } });
    server = await serveHttp((req, signal) => handler.handle(req, signal), {
      maxBodyBytes: MAX_BODY,
    });
  });
  afterAll(async () => {
    await server?.close();
    await handler?.close();
    await database?.drop();
  });

  /** A correctly signed request for `target` as it goes on the wire. */
  async function send(target: string, init: { method?: string; body?: string } = {}) {
    const url = new URL(`${server.url}${target}`);
    const method = init.method ?? 'GET';
    const headers = authHeaders(
      { type: 'hmac', secret: SECRET },
      { method, target: `${url.pathname}${url.search}`, body: init.body },
    );
    const response = await fetch(url, { method, headers, body: init.body });
    const text = await response.text();
    return { status: response.status, headers: response.headers, text };
  }

  async function expectError(target: string, status: number, message: RegExp, method?: string) {
    const answer = await send(target, { method });
    expect(answer.status, `${method ?? 'GET'} ${target}`).toBe(status);
    const body = JSON.parse(answer.text) as { error: { code: string; message: string } };
    expect(body.error.message, `${method ?? 'GET'} ${target}`).toMatch(message);
    expect(body.error.code).toMatch(/^BATON_/);
    return answer;
  }

  it('answers a good request (the baseline the bad ones differ from)', async () => {
    const answer = await send('/baton/events?after=0&limit=2&wait=0&types=customer.registered');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.text.split('\n')[0] as string)).toEqual({ next: '2', count: 2 });
    expect((await send('/baton/events?types=')).status).toBe(200);
  });

  it.each(['abc', '-1', '1.5', '', '1e3', ' 1', '0x10', '1'.repeat(19)])(
    '400 for after=%j',
    async (after) => {
      await expectError(
        `/baton/events?after=${encodeURIComponent(after)}`,
        400,
        /"after" must be a feed position/,
      );
    },
  );

  it.each(['0', '-1', '1.5', 'abc', '1001', '', 'Infinity', '1e3', '0x10', ' 5', '5.0', '+5'])(
    '400 for limit=%j',
    async (limit) => {
      await expectError(
        `/baton/events?limit=${encodeURIComponent(limit)}`,
        400,
        /"limit" must be an integer from 1 to 1000/,
      );
    },
  );

  it.each(['-1', '1.5', 'abc', '30001', 'NaN', '1e3', '0x10', ' 5'])(
    '400 for wait=%j',
    async (wait) => {
      await expectError(
        `/baton/events?wait=${encodeURIComponent(wait)}`,
        400,
        /"wait" must be milliseconds from 0 to 30000/,
      );
    },
  );

  it.each(['a,,b', ',', '1abc', 'a b', 'a;DROP TABLE x', 'x'.repeat(201)])(
    '400 for types=%j',
    async (types) => {
      await expectError(
        `/baton/events?types=${encodeURIComponent(types)}`,
        400,
        /"types" must be a comma-separated list/,
      );
    },
  );

  it('404 for any other path', async () => {
    for (const path of [
      '/baton',
      '/baton/',
      '/baton/event',
      '/baton/events/1',
      '/other/events',
      '/',
    ]) {
      // Before authentication the answer lists nothing the service serves.
      const answer = await expectError(path, 404, /no such endpoint under \/baton\//);
      expect(JSON.stringify(answer)).not.toMatch(/events/);
    }
  });

  it('405 for other methods, with Allow: GET', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const answer = await expectError('/baton/events', 405, /only answers GET/, method);
      expect(answer.headers.get('allow')).toBe('GET');
    }
  });

  it('413 for a body over maxBodyBytes, before any auth or database work', async () => {
    const body = 'x'.repeat(MAX_BODY + 1);
    const answer = await send('/baton/events', { method: 'POST', body });
    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.text).error.message).toMatch(/request body is over 1024 bytes/);
    // Exactly at the limit is read (and then refused for the method, not the size).
    expect(
      (await send('/baton/events', { method: 'POST', body: 'x'.repeat(MAX_BODY) })).status,
    ).toBe(405);
  });

  it('413 while an oversized body is still streaming in (the server stops reading it)', async () => {
    const url = new URL(`${server.url}/baton/events`);
    const chunk = Buffer.alloc(256, 'y');
    const headers = { 'transfer-encoding': 'chunked' };
    let status = 0;
    let ended = false;
    const req = request(url, { method: 'POST', headers });
    const answered = new Promise<void>((resolve) => {
      req.on('response', (res) => {
        status = res.statusCode ?? 0;
        res.resume();
        resolve();
      });
      req.on('error', () => resolve()); // the server may close the socket under us: fine
    });
    // Up to 1000 × the limit; a server that reads everything answers only after the end.
    for (let sent = 0; status === 0 && sent < MAX_BODY * 1000; sent += chunk.length) {
      if (!req.write(chunk))
        await Promise.race([new Promise((r) => req.once('drain', r)), answered]);
      await new Promise((r) => setImmediate(r));
    }
    if (status === 0) {
      ended = true;
      req.end();
    }
    await answered;
    req.destroy();
    expect(ended, 'the server answered only after the whole body was sent').toBe(false);
    expect(status).toBe(413);
  });

  it('409 when after lies beyond the newest event', async () => {
    await expectError(
      '/baton/events?after=5',
      409,
      /cursor 5 is beyond the newest event of this feed \(position 4\)/,
    );
    await expectError(`/baton/events?after=${'9'.repeat(18)}`, 409, /beyond the newest event/);
    expect((await send('/baton/events?after=4')).status).toBe(200);
  });

  it('410 when after lies before the pruned events, and the consumer gets CursorExpiredError', async () => {
    await database.db.query('UPDATE baton.relay_state SET pruned_through = 2');
    try {
      const expired = await expectError(
        '/baton/events?after=1',
        410,
        /cursor 1 lies before the oldest retained position \(2\): the events after 1 up to 2 were pruned/,
      );
      // The position as a value, for the consumer to record and the operator's reset to use.
      expect(JSON.parse(expired.text)).toMatchObject({
        error: { code: 'BATON_CURSOR_EXPIRED', oldestRetained: '2' },
      });
      await expectError('/baton/events?after=0', 410, /were pruned/);
      const ok = await send('/baton/events?after=2');
      expect(ok.status).toBe(200);
      const source = httpFeedSource({
        name: 'customers',
        url: `${server.url}/baton`,
        auth: { type: 'hmac', secret: SECRET },
      });
      await expect(
        source.fetch({
          cursor: '1',
          limit: 10,
          waitMs: 0,
          types: [],
          signal: new AbortController().signal,
        }),
      ).rejects.toMatchObject({
        name: 'CursorExpiredError',
        code: 'BATON_CURSOR_EXPIRED',
        cursor: '1',
        oldestRetained: '2',
      });
    } finally {
      await database.db.query('UPDATE baton.relay_state SET pruned_through = 0');
    }
  });

  it('410 after a real prune with retention 0', async () => {
    const relay = producer.relay({ retentionMs: 0, pruneIntervalMs: 0 });
    await eventually(
      async () =>
        (await relay.pruneIfDue()) > 0 || (await send('/baton/events?after=0')).status === 410,
      'the relay pruned',
    );
    await expectError(
      '/baton/events?after=0',
      410,
      /lies before the oldest retained position \(4\)/,
    );
    const answer = await send('/baton/events?after=4');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.text.split('\n')[0] as string)).toEqual({ next: '4', count: 0 });
  });
});
