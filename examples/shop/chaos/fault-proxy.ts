import {
  Agent,
  type ClientRequest,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';
import { type AddressInfo, isIPv4, type Socket } from 'node:net';
import { InvalidInputError } from '../../../src/index.ts';
import type { SeededRandom } from './seeded-random.ts';

/**
 * An HTTP-aware fault proxy on loopback, for the chaos harness (the kernel
 * here has no netem and there is no toxiproxy). One instance sits on each
 * link; it forwards method, path, query, headers and body unchanged and
 * streams the answer back (long-polls included), and on the way injects the
 * faults a network can cause:
 *
 * - `delay`: wait before forwarding;
 * - `reset`: reset the client's socket before forwarding (never reached the target);
 * - `dropResponse`: forward, let the target answer, then reset the client's
 *   socket (the call ran; the caller cannot know);
 * - `duplicate`: forward a second copy right behind the first (its answer discarded);
 * - `lateReplay`: replay a copy to the target later (its answer discarded);
 * - `reorder`: hold a request until the next one has been forwarded (or a short wait);
 * - `oneWay`: forward, drop every answer; the caller hangs until healed, then is reset;
 * - `blackhole`: accept, never forward, never answer; reset when healed;
 * - `hostileAnswers`: answer in the target's place with an endless body.
 *
 * Decisions are drawn from a seeded stream: every request draws the same
 * number of values whatever the settings, so the n-th request of a replayed
 * run gets the same decision. Everything held is bounded (`maxHeld`) and
 * `close()` leaves no socket, timer or request behind.
 */
export interface FaultSettings {
  /** Delay before forwarding, uniform in [min, max] ms, with `delayChance` (default 1 when set). */
  delayMs?: [min: number, max: number];
  delayChance?: number;
  /** Close the client socket before forwarding (the request never reaches the target). */
  reset?: number;
  /** Forward, let the target answer, then reset the client socket (outcome unknown to the caller). */
  dropResponse?: number;
  /** Forward the request twice (the second copy's answer is discarded). */
  duplicate?: number;
  /** Remember the request and replay it to the target after `replayDelayMs` (answer discarded). */
  lateReplay?: number;
  /** Default [100, 1000]. */
  replayDelayMs?: [min: number, max: number];
  /** Hold the request and release it after the next one is forwarded (or after `reorderWaitMs`). */
  reorder?: number;
  /** Default 200. */
  reorderWaitMs?: number;
  /** Requests are forwarded but every response is dropped (a partition in one direction). */
  oneWay?: boolean;
  /** Accept, never forward, never answer (until healed; then those sockets are reset). */
  blackhole?: boolean;
  /**
   * A hostile peer: never forward; answer every request 200 with a body that
   * never ends (up to 1 GiB, or until the caller hangs up). Set by the
   * harness for a bounded window, not drawn: the seeded stream is unchanged.
   */
  hostileAnswers?: boolean;
}

/** The fault kinds counted in `stats()`; their sum is the number of faults injected. */
export const FAULT_KINDS = [
  'delay',
  'reset',
  'dropResponse',
  'duplicate',
  'lateReplay',
  'reorder',
  'oneWay',
  'blackhole',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * Other counters in `stats()`: requests forwarded (originals; copies are counted as
 * `duplicate` and `lateReplayDelivered`), upstream
 * failures (the caller was reset), requests refused because `maxHeld` was reached,
 * replays sent, held requests released by a next one, bodies too large to copy,
 * requests reset because no target was set yet.
 */
export const OUTCOMES = [
  'forwarded',
  'upstreamError',
  'overflow',
  'lateReplayDelivered',
  'reorderSwapped',
  'largeBodyStreamed',
  'notCopiedLargeBody',
  'noTarget',
  'hostileAnswer',
] as const;

/** The number of faults injected, from `stats()`. */
export function faultsInjected(stats: Record<string, number>): number {
  return FAULT_KINDS.reduce((sum, kind) => sum + (stats[kind] ?? 0), 0);
}

/** What the proxy did to one request (in arrival order), for a run's log. */
export interface FaultDecision {
  proxy: string;
  /** 1-based arrival number at this proxy. */
  n: number;
  method: string;
  path: string;
  faults: FaultKind[];
}

export interface FaultProxyOptions {
  /**
   * `http://` origin on loopback (127.0.0.0/8, ::1 or localhost); anything else is refused.
   * May be left out and given later with `setTarget` (the shop's `peerUrl` callback is
   * synchronous and learns the direct URL only then); until then every request is reset.
   */
  target?: string;
  random: SeededRandom;
  name?: string;
  /** Bodies up to this size are buffered (so they can be copied); larger ones stream through uncopied. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Cap on requests held at once (blackholed, one-way, pending replays); beyond it a request is reset. Default 1,000. */
  maxHeld?: number;
  /** An upstream request that takes longer is abandoned and the caller reset. Default 30 s. */
  upstreamTimeoutMs?: number;
  onDecision?: (decision: FaultDecision) => void;
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>` */
  url: string;
  name: string;
  /** Points the proxy at a (loopback) target; throws for any other. */
  setTarget(target: string): void;
  /** Replaces the settings; a partition that is switched off resets the sockets it held. */
  set(settings: FaultSettings): void;
  /** All faults off; held requests and pending replays are released now, hung sockets reset. */
  heal(): void;
  /** Counts per fault kind injected, plus requests seen and a few outcomes. */
  stats(): Record<string, number>;
  /** Resolves when no copy (duplicate, replay) is pending or in flight and nothing is held. */
  settled(): Promise<void>;
  close(): Promise<void>;
}

/** Refuses any target that is not plain HTTP on loopback; returns it parsed. */
export function loopbackTarget(target: string): URL {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw new InvalidInputError(`fault proxy target is not a URL: ${JSON.stringify(target)}`);
  }
  const host = url.hostname;
  const loopback =
    host === 'localhost' || host === '[::1]' || (isIPv4(host) && host.startsWith('127.'));
  if (url.protocol !== 'http:' || !loopback) {
    throw new InvalidInputError(
      `fault proxy targets must be http:// on loopback (127.0.0.0/8, ::1 or localhost); got ${url.protocol}//${host}`,
    );
  }
  return url;
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const proxy = new FaultProxyServer(options);
  await proxy.listen();
  return {
    url: proxy.url,
    name: proxy.name,
    setTarget: (target) => proxy.setTarget(target),
    set: (settings) => proxy.set(settings),
    heal: () => proxy.heal(),
    stats: () => proxy.stats(),
    settled: () => proxy.settled(),
    close: () => proxy.close(),
  };
}

/** A request as forwarded: the body buffered, or (when too large) its head plus the rest of the stream. */
interface Outgoing {
  method: string;
  path: string;
  headers: OutgoingHttpHeaders;
  body: Buffer | undefined;
  streamed?: { head: Buffer[]; rest: IncomingMessage };
}

/** What the fixed per-request draws say, under the settings of the moment. */
interface Plan {
  reset: boolean;
  dropResponse: boolean;
  duplicate: boolean;
  lateReplay: boolean;
  reorder: boolean;
  delayMs: number;
  replayDelayMs: number;
}

type HungKind = 'blackhole' | 'oneWay';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
]);
/** After the next request is on the wire, a held one follows this much later (so it arrives second). */
const REORDER_GAP_MS = 10;

class FaultProxyServer {
  readonly name: string;
  url = '';
  private settings: FaultSettings = {};
  private target: URL | undefined;
  private readonly random: SeededRandom;
  private readonly maxBodyBytes: number;
  private readonly maxHeld: number;
  private readonly upstreamTimeoutMs: number;
  private readonly counts = new Map<string, number>();
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 256 });
  private readonly server = createServer((req, res) => {
    this.handle(req, res).catch(() => resetSocket(req.socket));
  });
  /** Releases for delayed and reorder-held requests (heal and close call them). */
  private readonly holds = new Set<() => void>();
  private reorderHeld: (() => void) | undefined;
  private readonly hung = new Map<Socket, HungKind>();
  private readonly replayTimers = new Map<NodeJS.Timeout, Outgoing>();
  /** Every request this proxy sent upstream and has not finished with. */
  private readonly upstream = new Set<ClientRequest>();
  /** Copies (duplicates, replays) in flight. */
  private copiesInFlight = 0;
  private settledWaiters: (() => void)[] = [];
  private seen = 0;
  /** Bumped by heal(): a request drawn before it and still held is then forwarded without faults. */
  private epoch = 0;
  private closed = false;

  constructor(private readonly options: FaultProxyOptions) {
    this.target = options.target === undefined ? undefined : loopbackTarget(options.target);
    this.random = options.random;
    this.name = options.name ?? `proxy→${this.target?.host ?? '?'}`;
    this.maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
    this.maxHeld = options.maxHeld ?? 1000;
    this.upstreamTimeoutMs = options.upstreamTimeoutMs ?? 30_000;
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', resolve);
    });
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  setTarget(target: string): void {
    this.target = loopbackTarget(target);
  }

  set(settings: FaultSettings): void {
    validateSettings(settings);
    this.settings = { ...settings };
    if (!settings.blackhole) this.resetHung('blackhole');
    if (!settings.oneWay) this.resetHung('oneWay');
  }

  heal(): void {
    this.set({});
    this.epoch++;
    for (const release of [...this.holds]) release();
    for (const [timer, copy] of [...this.replayTimers]) {
      clearTimeout(timer);
      this.replayTimers.delete(timer);
      this.replayNow(copy);
    }
  }

  stats(): Record<string, number> {
    const out: Record<string, number> = { requests: this.seen };
    for (const key of [...FAULT_KINDS, ...OUTCOMES]) out[key] = this.counts.get(key) ?? 0;
    out.heldNow = this.holds.size;
    out.hungNow = this.hung.size;
    out.replaysPending = this.replayTimers.size;
    return out;
  }

  settled(): Promise<void> {
    if (this.isSettled()) return Promise.resolve();
    return new Promise((resolve) => this.settledWaiters.push(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const release of [...this.holds]) release();
    for (const timer of this.replayTimers.keys()) clearTimeout(timer);
    this.replayTimers.clear();
    this.resetHung('blackhole');
    this.resetHung('oneWay');
    for (const request of this.upstream) request.destroy();
    const closing = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closing;
    this.agent.destroy();
    this.notifySettled(true);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const n = ++this.seen;
    const epoch = this.epoch;
    let plan = this.plan();
    const faults: FaultKind[] = [];
    const decided = () =>
      this.options.onDecision?.({
        proxy: this.name,
        n,
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        faults,
      });

    if (!this.target) {
      this.count('noTarget');
      resetSocket(req.socket);
      return decided();
    }
    if (this.settings.blackhole) {
      this.hang(req.socket, 'blackhole', faults);
      return decided();
    }
    if (this.settings.hostileAnswers) {
      this.count('hostileAnswer');
      req.resume();
      streamEndlessly(res);
      return decided();
    }
    if (plan.reset) {
      this.count('reset', faults);
      resetSocket(req.socket);
      return decided();
    }
    const outgoing = await this.readRequest(req);
    if (plan.delayMs > 0) {
      this.count('delay', faults);
      await this.hold(plan.delayMs);
    }
    if (plan.reorder && !this.reorderHeld && !this.closed) {
      this.count('reorder', faults);
      await this.hold(this.settings.reorderWaitMs ?? 200, (release) => {
        this.reorderHeld = release;
      });
    }
    if (this.closed) {
      resetSocket(req.socket);
      return decided();
    }
    if (epoch !== this.epoch)
      plan = { ...plan, dropResponse: false, duplicate: false, lateReplay: false };
    this.forward(req, res, outgoing, plan, faults);
    decided();
  }

  /** Draws the same eight numbers for every request, so decisions replay with the seed. */
  private plan(): Plan {
    const s = this.settings;
    const [reset, drop, duplicate, replay, reorder, delayChance, delay, replayDelay] = Array.from(
      { length: 8 },
      () => this.random.next(),
    ) as [number, number, number, number, number, number, number, number];
    const delayRange = s.delayMs;
    const replayRange = s.replayDelayMs ?? [100, 1000];
    return {
      reset: reset < (s.reset ?? 0),
      dropResponse: drop < (s.dropResponse ?? 0),
      duplicate: duplicate < (s.duplicate ?? 0),
      lateReplay: replay < (s.lateReplay ?? 0),
      reorder: reorder < (s.reorder ?? 0),
      delayMs: delayRange && delayChance < (s.delayChance ?? 1) ? scale(delay, delayRange) : 0,
      replayDelayMs: scale(replayDelay, replayRange),
    };
  }

  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    outgoing: Outgoing,
    plan: Plan,
    faults: FaultKind[],
  ): void {
    const oneWay = this.settings.oneWay === true;
    const fate: 'answer' | 'dropResponse' | 'oneWay' = oneWay
      ? 'oneWay'
      : plan.dropResponse
        ? 'dropResponse'
        : 'answer';
    if (fate === 'oneWay') this.hang(req.socket, 'oneWay', faults);
    if (fate === 'dropResponse') this.count('dropResponse', faults);
    // Copies need the buffered body; a streamed (large) one goes once.
    const duplicate = plan.duplicate && outgoing.body !== undefined;
    const replay =
      plan.lateReplay && outgoing.body !== undefined && this.replayTimers.size < this.maxHeld;
    if (duplicate) this.count('duplicate', faults);
    if (replay) this.count('lateReplay', faults);
    if ((plan.duplicate || plan.lateReplay) && !outgoing.body) this.count('notCopiedLargeBody');
    if (plan.lateReplay && outgoing.body && !replay) this.count('overflow');

    const upstream = this.send(outgoing, (response) => {
      if (fate === 'answer') return pipeResponse(response, res);
      response.resume();
      if (fate === 'dropResponse') response.once('close', () => resetSocket(req.socket));
    });
    this.count('forwarded');
    upstream.on('error', () => {
      this.count('upstreamError');
      if (fate !== 'oneWay') resetSocket(req.socket);
    });
    // The caller went away: a real connection closing would end the call upstream too.
    res.once('close', () => {
      if (fate === 'answer' && !res.writableFinished) upstream.destroy();
    });
    upstream.once('finish', () => {
      this.releaseReorderHeld();
      if (duplicate) this.sendCopy(outgoing);
      if (replay) this.scheduleReplay(outgoing, plan.replayDelayMs);
    });
  }

  /** Sends one request upstream; `onResponse` gets the answer. */
  private send(outgoing: Outgoing, onResponse: (response: IncomingMessage) => void): ClientRequest {
    const target = this.target as URL;
    const upstream = httpRequest({
      protocol: 'http:',
      hostname: target.hostname.replace(/^\[|\]$/g, ''),
      port: target.port || 80,
      method: outgoing.method,
      path: joinPath(target.pathname, outgoing.path),
      headers: outgoing.headers,
      agent: this.agent,
    });
    this.upstream.add(upstream);
    upstream.once('close', () => this.upstream.delete(upstream));
    upstream.setTimeout(this.upstreamTimeoutMs, () =>
      upstream.destroy(new Error(`${this.name}: upstream took over ${this.upstreamTimeoutMs} ms`)),
    );
    upstream.once('response', onResponse);
    if (outgoing.streamed) {
      for (const chunk of outgoing.streamed.head) upstream.write(chunk);
      outgoing.streamed.rest.pipe(upstream);
      outgoing.streamed.rest.once('aborted', () => upstream.destroy());
    } else {
      upstream.end(outgoing.body);
    }
    return upstream;
  }

  /** A copy whose answer nobody waits for (a duplicate or a replay). */
  private sendCopy(outgoing: Outgoing): void {
    if (this.closed) return;
    this.copiesInFlight++;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      this.copiesInFlight--;
      this.notifySettled();
    };
    const copy = this.send(outgoing, (response) => {
      response.resume();
      response.once('close', finish);
      response.on('error', finish);
    });
    copy.on('error', finish);
    copy.once('close', finish);
  }

  private scheduleReplay(outgoing: Outgoing, delayMs: number): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.replayTimers.delete(timer);
      this.replayNow(outgoing);
    }, delayMs);
    this.replayTimers.set(timer, outgoing);
  }

  private replayNow(outgoing: Outgoing): void {
    this.count('lateReplayDelivered');
    this.sendCopy(outgoing);
    this.notifySettled();
  }

  /** Reads the body; up to `maxBodyBytes` is buffered, beyond that the rest streams through. */
  private readRequest(req: IncomingMessage): Promise<Outgoing> {
    const base = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: withoutHopByHop(req.headers),
    };
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const stop = () => {
        req.off('data', onData);
        req.off('end', onEnd);
        req.off('error', reject);
        req.off('close', onClose);
      };
      const onClose = () => {
        stop();
        reject(new Error('the caller went away before its request was complete'));
      };
      const onData = (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size <= this.maxBodyBytes) return;
        stop();
        req.pause();
        this.count('largeBodyStreamed');
        // Kept as sent: a content-length if there was one, else node chunks it again.
        resolve({ ...base, body: undefined, streamed: { head: chunks, rest: req } });
      };
      const onEnd = () => {
        stop();
        const body = Buffer.concat(chunks);
        const framed =
          req.headers['content-length'] !== undefined || req.headers['transfer-encoding'];
        if (framed) base.headers['content-length'] = String(body.length);
        resolve({ ...base, body });
      };
      req.on('data', onData);
      req.once('end', onEnd);
      req.once('error', reject);
      req.once('close', onClose);
    });
  }

  /** Keeps the client's socket open and silent until healed (then it is reset). */
  private hang(socket: Socket, kind: HungKind, faults: FaultKind[]): void {
    if (this.hung.size >= this.maxHeld) {
      this.count('overflow');
      resetSocket(socket);
      return;
    }
    this.count(kind, faults);
    this.hung.set(socket, kind);
    socket.once('close', () => this.hung.delete(socket));
  }

  private resetHung(kind: HungKind): void {
    for (const [socket, held] of [...this.hung]) {
      if (held !== kind) continue;
      this.hung.delete(socket);
      resetSocket(socket);
    }
  }

  /** Waits `ms`, or less when released (heal, close, or — for reorder — the next request). */
  private hold(ms: number, register?: (release: () => void) => void): Promise<void> {
    return new Promise((resolve) => {
      const release = () => {
        clearTimeout(timer);
        if (this.reorderHeld === release) this.reorderHeld = undefined;
        this.holds.delete(release);
        resolve();
        this.notifySettled();
      };
      const timer = setTimeout(release, ms);
      this.holds.add(release);
      register?.(release);
    });
  }

  private releaseReorderHeld(): void {
    const release = this.reorderHeld;
    if (!release) return;
    this.reorderHeld = undefined;
    this.count('reorderSwapped');
    setTimeout(release, REORDER_GAP_MS);
  }

  private count(key: string, faults?: FaultKind[]): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    if (faults) faults.push(key as FaultKind);
  }

  private isSettled(): boolean {
    return this.copiesInFlight === 0 && this.replayTimers.size === 0 && this.holds.size === 0;
  }

  private notifySettled(force = false): void {
    if (!force && !this.isSettled()) return;
    const waiters = this.settledWaiters;
    this.settledWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

function validateSettings(s: FaultSettings): void {
  for (const key of [
    'reset',
    'dropResponse',
    'duplicate',
    'lateReplay',
    'reorder',
    'delayChance',
  ] as const) {
    const p = s[key];
    if (p !== undefined && !(p >= 0 && p <= 1)) {
      throw new InvalidInputError(`fault setting ${key} is a probability in [0, 1] (got ${p})`);
    }
  }
  for (const key of ['delayMs', 'replayDelayMs'] as const) {
    const range = s[key];
    if (range !== undefined && !(range[0] >= 0 && range[1] >= range[0] && range[1] <= 600_000)) {
      throw new InvalidInputError(
        `fault setting ${key} is [min, max] ms with 0 <= min <= max <= 600000`,
      );
    }
  }
  const wait = s.reorderWaitMs;
  if (wait !== undefined && !(wait >= 0 && wait <= 60_000)) {
    throw new InvalidInputError(`fault setting reorderWaitMs is 0..60000 ms (got ${wait})`);
  }
}

/** A uniform draw mapped onto [min, max] (integer ms). */
function scale(u: number, [min, max]: [number, number]): number {
  return Math.floor(min + u * (max - min + 1));
}

function joinPath(base: string, path: string): string {
  return base === '/' ? path : `${base.replace(/\/$/, '')}${path}`;
}

function withoutHopByHop(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function pipeResponse(response: IncomingMessage, res: ServerResponse): void {
  if (res.destroyed) return void response.resume();
  res.writeHead(
    response.statusCode ?? 502,
    response.statusMessage,
    withoutHopByHop(response.headers),
  );
  // Flushed at once so a long-poll's caller sees the status while the body is still coming.
  res.flushHeaders();
  response.pipe(res);
  response.on('error', () => res.destroy());
  response.once('aborted', () => res.destroy());
}

/** A TCP reset (RST), as a broken network would give: the caller sees ECONNRESET, not a clean close. */
function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
  else socket.destroy();
}

const ENDLESS_CHUNK = Buffer.alloc(256 * 1024, 0x61);
const ENDLESS_CAP = 1024 * 1024 * 1024;

/** Answers 200 with `aaaa…` until the caller hangs up (or 1 GiB): what a hostile peer sends. */
function streamEndlessly(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  let sent = 0;
  let gone = false;
  res.once('close', () => {
    gone = true;
  });
  const pump = () => {
    while (!gone && sent < ENDLESS_CAP) {
      sent += ENDLESS_CHUNK.length;
      if (!res.write(ENDLESS_CHUNK)) return void res.once('drain', pump);
    }
    if (!gone) res.end();
  };
  pump();
}
