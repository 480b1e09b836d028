import { uuidv7 } from '../../../src/index.ts';
import type { ServiceName } from '../launcher.ts';
import { type HistoryEntry, type Outcome, outcomeOfAttempts } from './history.ts';
import type { SeededRandom } from './seeded-random.ts';

export interface WorkloadOptions {
  /** Commands in all (bounded). */
  operations: number;
  /** Commands in flight at once. */
  concurrency: number;
  /** Where the workload reaches each service (through its fault proxy). */
  urls: Record<ServiceName, string>;
  random: SeededRandom;
  /** Attempts per command; repeats carry the same client id (the idempotency key). */
  attempts?: number;
  requestTimeoutMs?: number;
  /** Stop early (e.g. the scenario's time is up). */
  signal?: AbortSignal;
  onEntry?: (entry: HistoryEntry) => void;
}

type Op = HistoryEntry['op'];
const MIX: [Op, number][] = [
  ['register', 0.22],
  ['place', 0.42],
  ['cancel', 0.1],
  ['update', 0.16],
  ['delete', 0.1],
];

/**
 * The chaos workload: a bounded, seeded stream of shop commands — register,
 * place order, cancel, update, delete customer — each with a client id that
 * is its idempotency key, each recorded with its outcome: ok (2xx), fail
 * (4xx: refused, nothing happened), or unknown (no answer, a reset, a 5xx:
 * it may or may not have happened). Repeats of a command use the same id.
 */
export async function runWorkload(options: WorkloadOptions): Promise<HistoryEntry[]> {
  const history: HistoryEntry[] = [];
  const random = options.random;
  const customers: string[] = [];
  const orders: string[] = [];
  let seq = 0;
  let issued = 0;
  const nextCommand = (): { op: Op; args: Record<string, unknown> } | undefined => {
    if (issued >= options.operations || options.signal?.aborted) return undefined;
    issued++;
    let op = pickWeighted(random, MIX);
    if (customers.length < 3) op = 'register';
    switch (op) {
      case 'register': {
        const id = `c${issued}-${random.int(0, 1e6)}`;
        customers.push(id);
        return {
          op,
          args: { id, name: `Customer ${issued}`, address: `${random.int(1, 999)} Chaos Street` },
        };
      }
      case 'place': {
        const id = `o${issued}-${random.int(0, 1e6)}`;
        orders.push(id);
        // Mostly affordable; sometimes more than a welcome bonus (the reservation refuses it).
        const points = random.chance(0.15) ? random.int(101, 400) : random.int(0, 40);
        return { op, args: { id, customerId: random.pick(customers), points } };
      }
      case 'cancel':
        // Mostly orders placed a while ago (their saga has likely completed), sometimes any order.
        return orders.length
          ? {
              op,
              args: {
                orderId: random.chance(0.8)
                  ? random.pick(orders.slice(0, Math.max(1, orders.length - 10)))
                  : random.pick(orders),
              },
            }
          : nextCommandFallback();
      case 'update':
        return {
          op,
          args: {
            id: random.pick(customers),
            address: `${random.int(1, 999)} Moved Avenue`,
            // time-ordered: a late replay of this update cannot undo a later one
            updateId: uuidv7(),
          },
        };
      case 'delete':
        return { op, args: { id: random.pick(customers) } };
    }
  };
  const nextCommandFallback = () => {
    const id = `c${issued}-${random.int(0, 1e6)}`;
    customers.push(id);
    return {
      op: 'register' as Op,
      args: { id, name: `Customer ${issued}`, address: '1 Fallback Road' },
    };
  };

  const worker = async () => {
    for (;;) {
      const command = nextCommand();
      if (!command) return;
      const seqOf = ++seq;
      const entry = { seq: seqOf, ...(await sendCommand(command.op, command.args, options)) };
      history.push(entry);
      options.onEntry?.(entry);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return history.sort((a, b) => a.seq - b.seq);
}

/** Where and how a command is sent (the workload's options, or the harness's own). */
export type CommandTarget = Pick<WorkloadOptions, 'urls' | 'attempts' | 'requestTimeoutMs'>;

/**
 * Sends one command (repeated with the same id while its outcome is
 * unknown) and returns its history entry, without its sequence number.
 */
export async function sendCommand(
  op: Op,
  args: Record<string, unknown>,
  options: CommandTarget,
): Promise<Omit<HistoryEntry, 'seq'>> {
  const startedAt = Date.now();
  const attempts = options.attempts ?? 3;
  const statuses: (number | undefined)[] = [];
  let status: number | undefined;
  let body: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const result = await send(op, args, options);
    status = result.status;
    body = result.body;
    statuses.push(result.status);
    if (result.outcome !== 'unknown') break;
    await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
  }
  // A 4xx after an unanswered attempt is not a clean failure: the first attempt may have taken effect.
  const outcome = outcomeOfAttempts(statuses);
  return { op, args, outcome, status, body, startedAt, endedAt: Date.now() };
}

async function send(
  op: Op,
  args: Record<string, unknown>,
  options: CommandTarget,
): Promise<{ outcome: Outcome; status?: number; body?: unknown }> {
  const { urls } = options;
  const [service, method, path, body]: [ServiceName, string, string, unknown] =
    op === 'register'
      ? ['customers', 'POST', '/customers', args]
      : op === 'place'
        ? ['orders', 'POST', '/orders', args]
        : op === 'cancel'
          ? [
              'orders',
              'POST',
              `/orders/${encodeURIComponent(String(args.orderId))}/cancel`,
              undefined,
            ]
          : op === 'update'
            ? [
                'customers',
                'PATCH',
                `/customers/${encodeURIComponent(String(args.id))}`,
                { address: args.address, updateId: args.updateId },
              ]
            : [
                'customers',
                'DELETE',
                `/customers/${encodeURIComponent(String(args.id))}`,
                undefined,
              ];
  try {
    const response = await fetch(`${urls[service]}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(options.requestTimeoutMs ?? 8_000),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {}
    const outcome: Outcome =
      response.status < 300 ? 'ok' : response.status < 500 ? 'fail' : 'unknown';
    return { outcome, status: response.status, body: parsed };
  } catch {
    return { outcome: 'unknown' };
  }
}

function pickWeighted<T>(random: SeededRandom, weights: readonly [T, number][]): T {
  const total = weights.reduce((n, [, w]) => n + w, 0);
  let x = random.next() * total;
  for (const [item, w] of weights) {
    x -= w;
    if (x < 0) return item;
  }
  return (weights.at(-1) as [T, number])[0];
}
