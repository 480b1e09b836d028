import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type FaultDecision,
  type FaultProxy,
  loopbackTarget,
  startFaultProxy,
} from '../examples/shop/chaos/fault-proxy.ts';
import { SeededRandom } from '../examples/shop/chaos/seeded-random.ts';
import { authHeaders, RequestVerifier } from '../src/index.ts';
import { eventually, SECRET } from './helpers.ts';

/** One request as the target saw it. */
interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/**
 * The proxy's target: records every request and answers with what it saw.
 * `/signed` checks Baton's HMAC signature; `/stream` sends one line, then the
 * rest only when the test says so (a long-poll that is still running).
 */
async function startTarget() {
  const seen: Seen[] = [];
  const verifier = new RequestVerifier({ type: 'hmac', secrets: [SECRET] });
  let finishStream: (() => void) | undefined;
  const streamGate = new Promise<void>((resolve) => {
    finishStream = resolve;
  });
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const entry = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      body: body.toString(),
    };
    seen.push(entry);
    const path = new URL(entry.url, 'http://target.invalid').pathname;
    if (path === '/stream') {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write('{"line":1}\n');
      await streamGate;
      return res.end('{"line":2}\n');
    }
    if (path === '/signed') {
      const problem = await verifier.verify(req.headers as Record<string, string | undefined>, {
        method: entry.method,
        target: entry.url,
        body,
      });
      res.writeHead(problem ? 401 : 200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ problem: problem ?? null }));
    }
    res.writeHead(201, { 'content-type': 'application/json', 'x-target': 'echo' });
    res.end(JSON.stringify({ n: seen.length, ...entry }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    finishStream: () => finishStream?.(),
    close: () =>
      new Promise<void>((resolve) => {
        finishStream?.();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

type Target = Awaited<ReturnType<typeof startTarget>>;

const opened: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const thing of opened.splice(0).reverse()) await thing.close();
});

async function setUp(seed = 1, onDecision?: (d: FaultDecision) => void, maxBodyBytes?: number) {
  const target = await startTarget();
  opened.push(target);
  const proxy = await startFaultProxy({
    target: target.url,
    random: new SeededRandom(seed),
    name: 'test',
    onDecision,
    maxBodyBytes,
  });
  opened.push(proxy);
  return { target, proxy };
}

type Outcome = { status: number; body: string; headers: Headers } | { error: string };

/** A request through the proxy; a network error is an outcome, not a throw. */
function call(
  proxy: FaultProxy,
  path = '/echo',
  init: RequestInit = {},
): Promise<Outcome> & { settled: () => boolean } {
  let done = false;
  const promise = fetch(`${proxy.url}${path}`, init)
    .then(async (r) => ({ status: r.status, body: await r.text(), headers: r.headers }))
    .catch((error: Error) => ({ error: String((error.cause as Error)?.message ?? error.message) }))
    .finally(() => {
      done = true;
    });
  return Object.assign(promise, { settled: () => done });
}

function postJson(body: unknown): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': 'key-1' },
    body: JSON.stringify(body),
  };
}

const seenCount = (target: Target, n: number) => async () => target.seen.length >= n;

describe('fault proxy', () => {
  it('passes method, path, query, headers and body through unchanged, and the answer back', async () => {
    const { target, proxy } = await setUp();
    const outcome = await call(proxy, '/orders/o%201?a=1&b=two%20words&a=3', {
      method: 'PUT',
      headers: {
        'content-type': 'application/json',
        'idempotency-key': 'order-7:place',
        'x-custom': 'Mixed Case; value',
      },
      body: '{"amount":12,"note":"ünïcode"}',
    });
    expect(outcome).toMatchObject({ status: 201 });
    if (!('status' in outcome)) throw new Error('no answer');
    expect(outcome.headers.get('x-target')).toBe('echo');
    const echoed = JSON.parse(outcome.body) as Seen & { n: number };
    expect(echoed).toMatchObject({
      n: 1,
      method: 'PUT',
      url: '/orders/o%201?a=1&b=two%20words&a=3',
      body: '{"amount":12,"note":"ünïcode"}',
    });
    expect(echoed.headers).toMatchObject({
      'idempotency-key': 'order-7:place',
      'x-custom': 'Mixed Case; value',
      'content-type': 'application/json',
    });
    expect(target.seen).toHaveLength(1);
    expect(proxy.stats()).toMatchObject({ requests: 1, forwarded: 1, reset: 0 });
  });

  it('streams a long-poll: the first line arrives while the target still holds the rest', async () => {
    const { target, proxy } = await setUp();
    const response = await fetch(`${proxy.url}/stream?wait=2000`);
    expect(response.status).toBe(200);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe('{"line":1}\n');
    target.finishStream();
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      rest += new TextDecoder().decode(r.value);
    }
    expect(rest).toBe('{"line":2}\n');
  });

  it('passes signed Baton requests intact (a duplicate copy is then refused as a replay)', async () => {
    const { target, proxy } = await setUp();
    const auth = { type: 'hmac', secret: SECRET } as const;
    const path = '/signed?after=10&limit=5';
    const body = '{"points":30}';
    const signedInit = (): RequestInit => ({
      method: 'POST',
      headers: {
        'idempotency-key': 'reserve-1',
        ...authHeaders(auth, { method: 'POST', target: path, body, idempotencyKey: 'reserve-1' }),
      },
      body,
    });
    const ok = await call(proxy, path, signedInit());
    expect(ok).toMatchObject({ status: 200, body: '{"problem":null}' });
    expect(target.seen[0]?.headers).toHaveProperty('x-baton-signature');

    proxy.set({ duplicate: 1 });
    const duplicated = await call(proxy, path, signedInit());
    expect(duplicated).toMatchObject({ status: 200, body: '{"problem":null}' });
    await proxy.settled();
    // The copy is byte for byte the same request: the verifier accepts its signature but not its nonce.
    expect(target.seen).toHaveLength(3);
    expect(target.seen[2]?.headers['x-baton-nonce']).toBe(target.seen[1]?.headers['x-baton-nonce']);
    expect(target.seen[2]?.body).toBe(body);
    expect(proxy.stats().duplicate).toBe(1);
  });

  it('reset: the caller gets a network error and the target never sees the request', async () => {
    const { target, proxy } = await setUp();
    proxy.set({ reset: 1 });
    const outcome = await call(proxy, '/echo', postJson({ a: 1 }));
    expect(outcome).toHaveProperty('error');
    proxy.heal();
    expect(await call(proxy, '/after-heal')).toMatchObject({ status: 201 });
    expect(target.seen.map((s) => s.url)).toEqual(['/after-heal']);
    expect(proxy.stats()).toMatchObject({ requests: 2, reset: 1, forwarded: 1 });
  });

  it('dropResponse: the target answers, the caller gets a network error', async () => {
    const { target, proxy } = await setUp();
    proxy.set({ dropResponse: 1 });
    const outcome = await call(proxy, '/echo', postJson({ a: 1 }));
    expect(outcome).toHaveProperty('error');
    expect(target.seen).toHaveLength(1);
    expect(target.seen[0]?.body).toBe('{"a":1}');
    expect(proxy.stats()).toMatchObject({ requests: 1, dropResponse: 1 });
  });

  it('duplicate: the target sees two copies, the caller gets one answer (the first)', async () => {
    const { target, proxy } = await setUp();
    proxy.set({ duplicate: 1 });
    const outcome = await call(proxy, '/echo', postJson({ a: 1 }));
    expect(outcome).toMatchObject({ status: 201 });
    if (!('status' in outcome)) throw new Error('no answer');
    expect(JSON.parse(outcome.body)).toMatchObject({ n: 1 });
    await eventually(seenCount(target, 2), 'the duplicate at the target');
    await proxy.settled();
    expect(target.seen.map((s) => [s.url, s.body, s.headers['idempotency-key']])).toEqual([
      ['/echo', '{"a":1}', 'key-1'],
      ['/echo', '{"a":1}', 'key-1'],
    ]);
    expect(proxy.stats()).toMatchObject({ requests: 1, duplicate: 1 });
  });

  it('lateReplay: the copy reaches the target later (here: when healed)', async () => {
    const { target, proxy } = await setUp();
    proxy.set({ lateReplay: 1, replayDelayMs: [60_000, 60_000] });
    const outcome = await call(proxy, '/echo', postJson({ a: 1 }));
    expect(outcome).toMatchObject({ status: 201 });
    expect(target.seen).toHaveLength(1);
    expect(proxy.stats()).toMatchObject({ lateReplay: 1, lateReplayDelivered: 0 });
    proxy.heal();
    await proxy.settled();
    expect(target.seen.map((s) => s.body)).toEqual(['{"a":1}', '{"a":1}']);
    expect(proxy.stats()).toMatchObject({ lateReplay: 1, lateReplayDelivered: 1 });
  });

  it('lateReplay: the copy arrives on its own after the replay delay', async () => {
    const { target, proxy } = await setUp();
    proxy.set({ lateReplay: 1, replayDelayMs: [50, 100] });
    expect(await call(proxy, '/echo', postJson({ a: 2 }))).toMatchObject({ status: 201 });
    await eventually(seenCount(target, 2), 'the replayed copy');
    expect(target.seen[1]?.body).toBe('{"a":2}');
  });

  it('reorder: a held request reaches the target after the next one', async () => {
    const { target, proxy } = await setUp();
    proxy.set({ reorder: 1, reorderWaitMs: 30_000 });
    const first = call(proxy, '/first');
    await eventually(async () => proxy.stats().reorder === 1, 'the first request held');
    const second = call(proxy, '/second');
    expect(await second).toMatchObject({ status: 201 });
    expect(await first).toMatchObject({ status: 201 });
    expect(target.seen.map((s) => s.url)).toEqual(['/second', '/first']);
    expect(proxy.stats()).toMatchObject({ reorder: 1, reorderSwapped: 1 });
  });

  it('reorder: with no next request, the held one goes after the wait', async () => {
    const { target, proxy } = await setUp();
    proxy.set({ reorder: 1, reorderWaitMs: 20 });
    expect(await call(proxy, '/alone')).toMatchObject({ status: 201 });
    expect(target.seen.map((s) => s.url)).toEqual(['/alone']);
  });

  it('oneWay: the target sees the request, the caller never gets an answer (reset when healed)', async () => {
    const { target, proxy } = await setUp();
    proxy.set({ oneWay: true });
    const pending = call(proxy, '/echo', postJson({ a: 1 }));
    await eventually(seenCount(target, 1), 'the request at the target');
    await new Promise((r) => setTimeout(r, 200));
    expect(pending.settled()).toBe(false);
    proxy.heal();
    expect(await pending).toHaveProperty('error');
    expect(await call(proxy, '/after')).toMatchObject({ status: 201 });
    expect(proxy.stats()).toMatchObject({ oneWay: 1 });
  });

  it('blackhole: nothing forwarded, no answer; healing resets the held callers and traffic flows', async () => {
    const { target, proxy } = await setUp();
    proxy.set({ blackhole: true });
    const held = [call(proxy, '/a', postJson({ a: 1 })), call(proxy, '/b')];
    await eventually(async () => proxy.stats().blackhole === 2, 'both requests blackholed');
    await new Promise((r) => setTimeout(r, 200));
    expect(held.map((p) => p.settled())).toEqual([false, false]);
    expect(target.seen).toHaveLength(0);
    proxy.heal();
    for (const outcome of await Promise.all(held)) expect(outcome).toHaveProperty('error');
    expect(await call(proxy, '/after')).toMatchObject({ status: 201 });
    expect(target.seen.map((s) => s.url)).toEqual(['/after']);
  });

  it('delay: requests still arrive, and are counted', async () => {
    const { target, proxy } = await setUp();
    proxy.set({ delayMs: [20, 40] });
    for (let i = 0; i < 3; i++) expect(await call(proxy, `/d${i}`)).toMatchObject({ status: 201 });
    expect(target.seen).toHaveLength(3);
    expect(proxy.stats()).toMatchObject({ delay: 3, requests: 3 });
  });

  it('a seeded run makes the same decisions; another seed makes others', async () => {
    const settings = {
      reset: 0.15,
      dropResponse: 0.15,
      duplicate: 0.2,
      lateReplay: 0.2,
      replayDelayMs: [5, 20] as [number, number],
      reorder: 0.1,
      reorderWaitMs: 10,
      delayMs: [0, 5] as [number, number],
      delayChance: 0.3,
    };
    async function run(
      seed: number,
    ): Promise<{ decisions: string[]; stats: Record<string, number> }> {
      const decisions: FaultDecision[] = [];
      const { proxy } = await setUp(seed, (d) => decisions.push(d));
      proxy.set(settings);
      for (let i = 0; i < 30; i++) await call(proxy, `/r${i}`, postJson({ i }));
      await proxy.settled();
      const stats = proxy.stats();
      return {
        decisions: decisions
          .sort((a, b) => a.n - b.n)
          .map((d) => `${d.n} ${d.path} ${d.faults.join(',')}`),
        stats: Object.fromEntries(
          ['reset', 'dropResponse', 'duplicate', 'lateReplay', 'reorder', 'delay'].map((k) => [
            k,
            stats[k] ?? 0,
          ]),
        ),
      };
    }
    const a = await run(42);
    const b = await run(42);
    const c = await run(43);
    expect(b).toEqual(a);
    expect(c.decisions).not.toEqual(a.decisions);
    // Every kind was drawn at least once in 30 requests, so the comparison means something.
    for (const count of Object.values(a.stats)) expect(count).toBeGreaterThan(0);
  });

  it('streams a body over maxBodyBytes through whole, once (too large to copy)', async () => {
    const { target, proxy } = await setUp(1, undefined, 1024);
    proxy.set({ duplicate: 1, lateReplay: 1, replayDelayMs: [0, 0] });
    const big = JSON.stringify({ blob: 'x'.repeat(200_000) });
    expect(await call(proxy, '/big', postJson(JSON.parse(big)))).toMatchObject({ status: 201 });
    await proxy.settled();
    expect(target.seen.map((s) => s.body)).toEqual([big]);
    expect(target.seen[0]?.headers['content-length']).toBe(String(big.length));
    expect(proxy.stats()).toMatchObject({
      largeBodyStreamed: 1,
      notCopiedLargeBody: 1,
      duplicate: 0,
      lateReplay: 0,
    });
  });

  it('refuses targets that are not http on loopback', async () => {
    for (const target of [
      'http://10.0.0.1:80',
      'http://example.com',
      'http://[::2]:80',
      'https://127.0.0.1:443',
      'http://128.0.0.1:80',
      'not a url',
    ]) {
      await expect(
        startFaultProxy({ target, random: new SeededRandom(1) }),
        target,
      ).rejects.toThrow(/loopback|not a URL/);
    }
    for (const target of [
      'http://127.0.0.1:1',
      'http://127.9.8.7:1',
      'http://localhost:1',
      'http://[::1]:1',
    ]) {
      expect(() => loopbackTarget(target)).not.toThrow();
    }
  });

  it('can be started before its target is known (setTarget); resets requests until then', async () => {
    const target = await startTarget();
    opened.push(target);
    const proxy = await startFaultProxy({ random: new SeededRandom(1), name: 'late' });
    opened.push(proxy);
    expect(await call(proxy, '/early')).toHaveProperty('error');
    expect(() => proxy.setTarget('http://192.168.1.1:80')).toThrow(/loopback/);
    proxy.setTarget(target.url);
    expect(await call(proxy, '/later')).toMatchObject({ status: 201 });
    expect(target.seen.map((s) => s.url)).toEqual(['/later']);
    expect(proxy.stats()).toMatchObject({ requests: 2, noTarget: 1, forwarded: 1 });
  });

  it('close() resets held callers and cancels pending replays', async () => {
    const { target, proxy } = await setUp();
    proxy.set({ lateReplay: 1, replayDelayMs: [60_000, 60_000] });
    expect(await call(proxy, '/x', postJson({}))).toMatchObject({ status: 201 });
    proxy.set({ blackhole: true });
    const held = call(proxy, '/held');
    await eventually(async () => proxy.stats().blackhole === 1, 'the request blackholed');
    await proxy.close();
    expect(await held).toHaveProperty('error');
    await proxy.settled();
    expect(target.seen.map((s) => s.url)).toEqual(['/x']);
    expect(proxy.stats().lateReplayDelivered ?? 0).toBe(0);
  });
});
