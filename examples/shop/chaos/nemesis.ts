import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { streamName } from '../../../src/nats.ts';
import type { RunningShop, ServiceName } from '../launcher.ts';
import { SERVICES } from '../launcher.ts';
import type { FaultProxy, FaultSettings } from './fault-proxy.ts';
import type { HistoryEntry } from './history.ts';
import type { FaultKind, Scenario } from './scenarios.ts';
import type { Schedule } from './schedule.ts';
import type { SeededRandom } from './seeded-random.ts';
import { tamper } from './tamper.ts';
import type { TcpFaultProxy } from './tcp-fault-proxy.ts';

export interface Nemesis {
  stop(): Promise<void>;
  /** Undo every fault in force: continue paused processes, restart dead ones, clocks back, proxies healed. */
  heal(): Promise<void>;
}

/**
 * Injects the scenario's faults on a seeded schedule until stopped:
 * SIGKILL (restart after a moment) and SIGSTOP/SIGCONT of service processes
 * (saga workers, consumers and relays die or freeze with them), immediate
 * PostgreSQL restarts, rotating network faults on every proxied link,
 * transactions that take their turn early and commit late, clocks set off
 * per process, and tampering behind Baton's back (tamper.ts). Every fault
 * goes into the run's schedule (network faults are counted by the proxies).
 * Loopback only; bounded by the scenario's duration.
 */
export function startNemesis(
  shop: RunningShop,
  proxies: readonly FaultProxy[],
  /** The services' links to the JetStream nodes (one per node), with NATS. */
  natsLinks: readonly TcpFaultProxy[],
  scenario: Scenario,
  random: SeededRandom,
  schedule: Schedule,
  log: (line: string) => void,
  /** The out-of-order writers' and the owner tampering's commands, for the history. */
  onCommand: (entry: Omit<HistoryEntry, 'seq'>) => void,
): Nemesis {
  const paused = new Set<ServiceName>();
  const down = new Set<ServiceName>();
  const clocked = new Set<ServiceName>();
  /** JetStream nodes down or paused now (by index). */
  const natsDown = new Set<number>();
  let stopping = false;
  let tampers = 0;
  const inFlight = new Set<Promise<unknown>>();
  const record = (kind: FaultKind, target: string, detail: string) =>
    schedule.record(kind, target, detail);
  const track = <T>(p: Promise<T>) => {
    inFlight.add(p);
    p.finally(() => inFlight.delete(p)).catch(() => {});
    return p;
  };
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  async function injectOne(kind: FaultKind): Promise<void> {
    const service = random.pick(SERVICES);
    switch (kind) {
      case 'kill': {
        if (down.has(service) || paused.has(service)) return;
        down.add(service);
        shop.signal(service, 'SIGKILL');
        const after = random.int(300, 2_000);
        record('kill', service, `SIGKILL, restart after ${after} ms`);
        await sleep(after);
        await shop
          .restart(service)
          .catch((e) => log(`restart ${service} failed: ${(e as Error).message}`));
        down.delete(service);
        return;
      }
      case 'pause': {
        if (down.has(service) || paused.has(service)) return;
        paused.add(service);
        const ms = random.int(1_000, 5_000);
        shop.signal(service, 'SIGSTOP');
        record('pause', service, `SIGSTOP for ${ms} ms`);
        await sleep(ms);
        shop.signal(service, 'SIGCONT');
        paused.delete(service);
        return;
      }
      case 'database-restart': {
        const cluster = random.pick(shop.clusters);
        record(
          'database-restart',
          `postgres:${cluster.port}`,
          'immediate (SIGQUIT), crash recovery',
        );
        await cluster.restartImmediately();
        return;
      }
      case 'network': {
        const proxy = random.pick(proxies);
        const settings = drawNetwork(random, scenario.network ?? {});
        proxy.set(settings);
        record('network', proxy.name, JSON.stringify(settings));
        await sleep(random.int(1_000, 4_000));
        proxy.heal();
        return;
      }
      case 'out-of-order':
        await outOfOrderCommit(shop, random, record, onCommand);
        return;
      case 'clock': {
        if (down.has(service) || paused.has(service)) return;
        const offset = random.pick([-120_000, -30_000, 30_000, 120_000]);
        down.add(service);
        clocked.add(service);
        record(
          'clock',
          service,
          `restart with the clock ${offset > 0 ? '+' : ''}${offset / 1000} s`,
        );
        await shop.restart(service, { clockOffsetMs: offset }).catch(() => {});
        down.delete(service);
        return;
      }
      case 'tamper':
        await tamper(shop, random.fork(`tamper:${tampers++}`), schedule, onCommand);
        return;
      case 'nats':
        await natsFault(shop, natsLinks, random, record, natsDown, sleep);
        return;
    }
  }

  const loop = (async () => {
    while (!stopping && scenario.faults.length > 0) {
      const kind = random.pick(scenario.faults);
      track(injectOne(kind).catch((e) => log(`fault ${kind} failed: ${(e as Error).message}`)));
      await sleep(random.int(...scenario.faultEveryMs));
    }
  })();

  return {
    async stop() {
      stopping = true;
      await loop;
      await Promise.allSettled([...inFlight]);
    },
    async heal() {
      for (const proxy of proxies) proxy.heal();
      for (const link of natsLinks) link.heal();
      if (shop.nats)
        for (const [i, node] of shop.nats.nodes.entries()) {
          node.process?.kill('SIGCONT');
          if (!node.process) await shop.nats.start(i);
        }
      for (const service of SERVICES) shop.signal(service, 'SIGCONT');
      for (const service of SERVICES) {
        const child = shop.process(service);
        const dead = !child || child.exitCode !== null || child.signalCode !== null;
        if (dead || clocked.has(service)) {
          await shop.restart(service, { clockOffsetMs: 0 });
          clocked.delete(service);
        }
      }
    },
  };
}

/**
 * One fault of the JetStream cluster (issue 14): a node SIGKILLed and started
 * again, a node paused (SIGSTOP, then SIGCONT), the whole cluster killed and
 * started again, the services' link to a node cut (connections reset, new
 * ones refused) or held (every byte stalled both ways, then delivered), or
 * a few recent messages deleted from customers' stream (the
 * one the other services read) behind Baton's back (the subscribers must find the gap and have the
 * producer's relay send them again from its outbox). At most one node is
 * down or paused at a time, so the cluster keeps its quorum — except for the
 * whole-cluster restart, which takes everything down for a moment.
 */
async function natsFault(
  shop: RunningShop,
  links: readonly TcpFaultProxy[],
  random: SeededRandom,
  record: (kind: FaultKind, target: string, detail: string) => void,
  down: Set<number>,
  sleep: (ms: number) => Promise<unknown>,
): Promise<void> {
  const cluster = shop.nats;
  if (!cluster) return;
  const roll = random.next();
  const node = random.int(0, cluster.nodes.length - 1);
  if (roll < 0.3) {
    if (down.size > 0) return;
    down.add(node);
    const after = random.int(500, 3_000);
    record('nats', `nats:${cluster.nodes[node]?.name}`, `SIGKILL, start after ${after} ms`);
    await cluster.kill(node);
    await sleep(after);
    await cluster.start(node);
    down.delete(node);
  } else if (roll < 0.5) {
    if (down.size > 0) return;
    down.add(node);
    const ms = random.int(1_000, 4_000);
    record('nats', `nats:${cluster.nodes[node]?.name}`, `SIGSTOP for ${ms} ms`);
    await cluster.kill(node, 'SIGSTOP');
    await sleep(ms);
    await cluster.kill(node, 'SIGCONT');
    down.delete(node);
  } else if (roll < 0.56) {
    if (down.size > 0) return;
    for (let i = 0; i < cluster.nodes.length; i++) down.add(i);
    record('nats', 'nats:cluster', 'every node SIGKILLed, all started again');
    await Promise.all(cluster.nodes.map((_, i) => cluster.kill(i)));
    await sleep(random.int(300, 1_500));
    await Promise.all(cluster.nodes.map((_, i) => cluster.start(i)));
    down.clear();
  } else if (roll < 0.8) {
    const link = links[node];
    if (!link || down.size > 0) return;
    down.add(node);
    const ms = random.int(1_000, 4_000);
    const cut = random.next() < 0.5;
    record(
      'nats',
      `link:${cluster.nodes[node]?.name}`,
      cut ? `cut: reset, refused for ${ms} ms` : `held for ${ms} ms`,
    );
    if (cut) link.cut(ms);
    else link.hold();
    await sleep(ms);
    link.heal();
    down.delete(node);
  } else {
    // The stream the others read (orders and loyalty replicate customers).
    const service = 'customers';
    const nc = await connect({ servers: cluster.servers, timeout: 2_000 });
    try {
      const jsm = await jetstreamManager(nc);
      const stream = streamName(service);
      const last = (await jsm.streams.info(stream)).state.last_seq;
      if (last < 5) return;
      const seqs = [
        ...new Set(
          Array.from({ length: random.int(1, 3) }, () => random.int(Math.max(1, last - 30), last)),
        ),
      ];
      const deleted: number[] = [];
      for (const seq of seqs)
        if (await jsm.streams.deleteMessage(stream, seq).catch(() => false)) deleted.push(seq);
      record(
        'nats',
        `nats:${stream}`,
        `deleted stream messages ${deleted.join(', ') || '(none: already gone)'}`,
      );
    } finally {
      await nc.close();
    }
  }
}

function drawNetwork(random: SeededRandom, profile: FaultSettings): FaultSettings {
  const settings: FaultSettings = { ...profile };
  // Now and then a one-way partition or a black hole, for a moment.
  const roll = random.next();
  if (roll < 0.08) return { oneWay: true };
  if (roll < 0.14) return { blackhole: true };
  return settings;
}

/**
 * A transaction that takes its place early and commits late: it updates a
 * customer (so its event's key lock is held) and sleeps before COMMIT while
 * other transactions commit around it.
 */
async function outOfOrderCommit(
  shop: RunningShop,
  random: SeededRandom,
  record: (kind: FaultKind, target: string, detail: string) => void,
  onCommand: (entry: Omit<HistoryEntry, 'seq'>) => void,
): Promise<void> {
  const client = new pg.Client({ connectionString: shop.databaseUrls.customers });
  client.on('error', () => {});
  await client.connect();
  try {
    const pick = await client.query<{ id: string }>(
      'SELECT id FROM customers ORDER BY random() LIMIT 1',
    );
    const id = pick.rows[0]?.id;
    if (!id) return;
    const holdMs = random.int(100, 1_500);
    const address = `${random.int(1, 999)} Late Lane`;
    const startedAt = Date.now();
    await client.query('BEGIN');
    await client.query('SELECT pg_current_xact_id()');
    const updated = await client.query('UPDATE customers SET address = $2 WHERE id = $1', [
      id,
      address,
    ]);
    await new Promise((resolve) => setTimeout(resolve, holdMs));
    await client.query('COMMIT');
    // An acknowledged update like any other: the checker must know it.
    if (updated.rowCount) {
      onCommand({
        op: 'update',
        args: { id, address },
        outcome: 'ok',
        status: 200,
        startedAt,
        endedAt: Date.now(),
      });
    }
    record('out-of-order', `customers:${id}`, `took its xid early, committed after ${holdMs} ms`);
  } finally {
    await client.end().catch(() => {});
  }
}
