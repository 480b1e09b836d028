import pg from 'pg';
import { sleep, wallMs } from './stats.ts';

/** One transaction of a load generator; returns how many events (or rows) it wrote. */
export type Txn = (client: pg.Client, clientIndex: number, n: number) => Promise<number>;

export interface ClosedLoopResult {
  transactions: number;
  events: number;
  durationMs: number;
  /** Wall-clock start and end (ms), to line up with samples taken elsewhere. */
  startedAt: number;
  endedAt: number;
  txLatenciesMs: number[];
}

export async function openClients(url: string, n: number): Promise<pg.Client[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const client = new pg.Client({ connectionString: url, application_name: 'bench-load' });
      // A connection dropped at shutdown must not crash the run; queries still reject.
      client.on('error', () => {});
      await client.connect();
      return client;
    }),
  );
}

export async function closeClients(clients: readonly pg.Client[]): Promise<void> {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
}

/**
 * Closed loop: every client runs transactions back to back until the time is
 * up or `maxEvents` were issued (each transaction reserves `eventsPerTx`
 * first, so the total is exact). Measures throughput at full concurrency.
 */
export async function closedLoop(options: {
  clients: readonly pg.Client[];
  durationMs: number;
  maxEvents?: number;
  eventsPerTx: number;
  txn: Txn;
  /** Flow control: while this says true (given the events issued so far), wait before the next transaction. */
  blocked?: (issued: number) => boolean;
}): Promise<ClosedLoopResult> {
  const startedAt = wallMs();
  const deadline = startedAt + options.durationMs;
  let issued = 0;
  let transactions = 0;
  let events = 0;
  const txLatenciesMs: number[] = [];
  const more = () =>
    options.maxEvents === undefined
      ? wallMs() < deadline
      : issued + options.eventsPerTx <= options.maxEvents;
  await Promise.all(
    options.clients.map(async (client, index) => {
      for (let n = 0; more(); n++) {
        while (options.blocked?.(issued) && more()) await sleep(5);
        if (!more()) break;
        issued += options.eventsPerTx;
        const t = wallMs();
        // Not `events += await …`: that reads `events` before the await, and the
        // publishers running meanwhile would have their additions overwritten.
        const written = await options.txn(client, index, n);
        events += written;
        txLatenciesMs.push(wallMs() - t);
        transactions++;
      }
    }),
  );
  const endedAt = wallMs();
  return {
    transactions,
    events,
    durationMs: endedAt - startedAt,
    startedAt,
    endedAt,
    txLatenciesMs,
  };
}

/**
 * Open loop at a fixed offered rate: transaction i is due at start + i/rate;
 * due transactions are handed to the first free client (they queue if every
 * client is busy, so a slow commit delays later starts but not the schedule).
 * `onCommitted` gets the wall-clock time right after COMMIT returned.
 */
export async function pacedLoop(options: {
  clients: readonly pg.Client[];
  ratePerSec: number;
  count: number;
  txn: Txn;
}): Promise<{ durationMs: number; offeredPerSec: number; maxQueue: number }> {
  const startedAt = wallMs();
  const intervalMs = 1000 / options.ratePerSec;
  const queue: number[] = [];
  const idle: Array<() => void> = [];
  let next = 0;
  let maxQueue = 0;
  let scheduled = false;

  const schedule = () => {
    const now = wallMs();
    while (next < options.count && startedAt + next * intervalMs <= now) queue.push(next++);
    maxQueue = Math.max(maxQueue, queue.length);
    while (queue.length > 0 && idle.length > 0) idle.shift()?.();
    if (next < options.count) {
      const wait = Math.max(0, startedAt + next * intervalMs - wallMs());
      setTimeout(schedule, wait);
    } else scheduled = true;
    if (scheduled) for (const wake of idle.splice(0)) wake();
  };
  setTimeout(schedule, 0);

  await Promise.all(
    options.clients.map(async (client, index) => {
      for (;;) {
        const n = queue.shift();
        if (n === undefined) {
          if (scheduled && next >= options.count) return;
          await new Promise<void>((resolve) => idle.push(resolve));
          continue;
        }
        await options.txn(client, index, n);
      }
    }),
  );
  const durationMs = wallMs() - startedAt;
  return { durationMs, offeredPerSec: (options.count / durationMs) * 1000, maxQueue };
}
