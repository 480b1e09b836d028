import pg from 'pg';
import type { RunningShop, ServiceName } from '../launcher.ts';
import { SERVICES } from '../launcher.ts';
import type { FaultProxy, FaultSettings } from './fault-proxy.ts';
import type { HistoryEntry } from './history.ts';
import type { FaultKind, Scenario } from './scenarios.ts';
import type { Schedule } from './schedule.ts';
import type { SeededRandom } from './seeded-random.ts';
import { tamper } from './tamper.ts';

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
