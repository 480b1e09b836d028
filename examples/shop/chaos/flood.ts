import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { authHeaders } from '../../../src/index.ts';
import type { RunningShop, ServiceName } from '../launcher.ts';

/**
 * Floods one service on loopback, bounded in count and time (security
 * review, issue 12, item 5): slow bodies under well-formed but false
 * signatures (each 1 MB announced, all but its last byte sent, then
 * stalled — a body must be held whole before its signature can be checked),
 * and many idle connections. Meanwhile a legitimate peer keeps reading the
 * service's feed. Measured: the service's RSS (from /proc), how many
 * connections it held, and whether it kept serving.
 */
export interface FloodReport {
  service: ServiceName;
  slowBodies: number;
  idleConnections: number;
  /** Of the idle connections, how many the service still held after a second (its cap: 1,000). */
  idleHeld: number;
  rssBeforeMiB: number;
  rssPeakMiB: number;
  /** The stated bound on RSS growth. */
  boundMiB: number;
  /** Legitimate feed reads during the slow-body flood: answered 200 / not. */
  servedDuring: number;
  failedDuring: number;
  /** After the flood: a legitimate read answered 200. */
  servingAfter: boolean;
}

/**
 * RSS growth allowed: the 64 MiB body budget, the bodies read and dropped
 * meanwhile (garbage until the next collection), and 1,500 sockets' buffers.
 * Measured in CI: +59 to +94 MiB. Without the budget, 300 bodies held: +300.
 */
export const FLOOD_RSS_BOUND_MIB = 160;

const SLOW_BODIES = 300;
const IDLE_CONNECTIONS = 1_200;
const BODY_BYTES = 1_000_000;

export async function floodService(
  shop: RunningShop,
  service: ServiceName = 'customers',
): Promise<FloodReport> {
  const pid = shop.process(service)?.pid;
  const url = new URL(shop.urls[service]);
  const port = Number(url.port);
  const rss = watchRss(pid);
  const sockets: Socket[] = [];
  const probes = { served: 0, failed: 0 };
  const legit = async () => {
    const path = '/baton/events?after=0&limit=5';
    const headers = authHeaders(shop.identities.orders.auth, {
      method: 'GET',
      target: path,
      audience: service,
    });
    try {
      const answer = await fetch(`${shop.urls[service]}${path}`, {
        headers,
        signal: AbortSignal.timeout(5_000),
      });
      await answer.arrayBuffer();
      return answer.status === 200;
    } catch {
      return false;
    }
  };
  try {
    // Slow bodies: each would hold 1 MB until the request timeout if nothing capped them.
    const forged = authHeaders(shop.identities.orders.auth, {
      method: 'POST',
      target: '/baton/actions/refund',
      body: 'something else',
      audience: service,
    });
    const head = [
      'POST /baton/actions/refund HTTP/1.1',
      `host: ${url.host}`,
      'content-type: application/json',
      `content-length: ${BODY_BYTES}`,
      'idempotency-key: flood',
      ...Object.entries(forged).map(([k, v]) => `${k}: ${v}`),
      '',
      '',
    ].join('\r\n');
    const body = Buffer.alloc(BODY_BYTES - 1, 0x20);
    for (let i = 0; i < SLOW_BODIES; i++) {
      const socket = await opened(port, sockets);
      socket.write(head);
      socket.write(body);
    }
    for (let i = 0; i < 10; i++) {
      if (await legit()) probes.served++;
      else probes.failed++;
      await sleep(200);
    }
    for (const s of sockets.splice(0)) s.destroy();
    // Many connections that never send a request.
    for (let i = 0; i < IDLE_CONNECTIONS; i++) await opened(port, sockets).catch(() => undefined);
    await sleep(1_000);
    const idleHeld = sockets.filter((s) => !s.destroyed && !s.closed).length;
    for (const s of sockets.splice(0)) s.destroy();
    await sleep(500);
    const servingAfter = await legit();
    return {
      service,
      slowBodies: SLOW_BODIES,
      idleConnections: IDLE_CONNECTIONS,
      idleHeld,
      rssBeforeMiB: rss.before,
      rssPeakMiB: rss.peak,
      boundMiB: FLOOD_RSS_BOUND_MIB,
      servedDuring: probes.served,
      failedDuring: probes.failed,
      servingAfter,
    };
  } finally {
    rss.stop();
    for (const s of sockets) s.destroy();
  }
}

/** Whether the flood was contained: memory within the bound, the connection cap held, serving on. */
export function floodContained(r: FloodReport): boolean {
  return (
    r.rssPeakMiB - r.rssBeforeMiB <= r.boundMiB &&
    r.idleHeld <= 1_000 &&
    r.servedDuring > 0 &&
    r.servingAfter
  );
}

function opened(port: number, sockets: Socket[]): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    socket.on('error', () => {});
    socket.once('connect', () => resolve(socket));
    socket.once('close', () => reject(new Error('closed')));
  });
}

/** A process's RSS now (`before`) and its peak, sampled every 100 ms until `stop()`. */
export function watchRss(pid: number | undefined): {
  readonly before: number;
  readonly peak: number;
  stop(): void;
} {
  const read = () => (pid === undefined ? 0 : rssMiB(pid));
  const before = read();
  let peak = before;
  const sample = () => {
    peak = Math.max(peak, read());
  };
  const sampler = setInterval(sample, 100);
  return {
    before,
    get peak() {
      return peak;
    },
    stop: () => {
      clearInterval(sampler);
      sample();
    },
  };
}

/** A process's resident set, from /proc (0 where there is none). */
function rssMiB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return Math.round(kb / 1024);
  } catch {
    return 0;
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
