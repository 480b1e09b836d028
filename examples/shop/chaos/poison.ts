import pg from 'pg';
import { retryDeadLetters, uuidv7 } from '../../../src/index.ts';
import { PgDatabase } from '../../../src/pg.ts';
import type { RunningShop, ServiceName } from '../launcher.ts';
import type { FlowProbeResult } from './checks/dead-letter-flow.ts';
import { observeFlow, readPoisonedBacklog } from './flow-probe.ts';
import type { HistoryEntry } from './history.ts';
import type { Schedule } from './schedule.ts';
import type { SeededRandom } from './seeded-random.ts';
import { sendCommand } from './workload.ts';

/** A dead-lettered key under load (see `startPoison`). */
export interface PoisonSettings {
  /** Customers poisoned at loyalty (registered by the harness, never touched by the workload). */
  keys: number;
  /** Address updates per poisoned customer, sent once its key is dead-lettered: the backlog behind it. */
  updatesPerKey: number;
  /** How long every other key may take to get through while the poisoned ones are blocked. */
  flowBoundMs: number;
  /** How long the set-up may take (dead letters, backlog); a miss is reported by the check. */
  setupBoundMs: number;
}

export interface Poison {
  /** What the flow probe saw, once the set-up and the probe are done (never rejects). */
  readonly observed: Promise<FlowProbeResult>;
  /** The operator's fix: drop the constraint, retry the dead letters (their keys then drain in order). */
  heal(): Promise<void>;
}

const SUBSCRIPTION = 'loyalty-from-customers';
const CONSTRAINT = 'chaos_poison';

/**
 * Poisons a few customers at loyalty while the workload runs, the way a bad
 * deploy would: a database constraint their handler then violates
 * (`CHECK (customer_id NOT LIKE 'poison-%')` on movements — the welcome
 * movement of a poisoned customer fails on every attempt). Then:
 *
 * 1. registers the poisoned customers through the API (history: register);
 * 2. waits until each one's `customer.registered` is a dead letter at
 *    loyalty, blocking its key (`block-key`);
 * 3. sends address updates for them through the API (history: update): their
 *    events pile up behind the dead letters, past the consumer's backlog limit;
 * 4. probes, before anything is healed, that every other key still flows
 *    (flow-probe.ts; judged by dead-letter-blocks-only-its-key).
 *
 * `heal()` is the operator's fix, after the workload: the constraint dropped
 * and the dead letters retried with Baton's `retryDeadLetters`; each poisoned
 * key then drains in order, and the run's checks see it handled like any other.
 */
export function startPoison(
  shop: RunningShop,
  clientUrls: Record<ServiceName, string>,
  settings: PoisonSettings & { limit: number },
  random: SeededRandom,
  schedule: Schedule,
  onCommand: (entry: Omit<HistoryEntry, 'seq'>) => void,
): Poison {
  const ids = Array.from(
    { length: settings.keys },
    (_, i) => `poison-${i + 1}-${random.int(0, 1e6)}`,
  );
  const keys = ids.map((id) => `customer:${id}`);
  const loyaltyUrl = shop.databaseUrls.loyalty;
  const send = async (op: HistoryEntry['op'], args: Record<string, unknown>) => {
    const entry = await sendCommand(op, args, { urls: clientUrls });
    onCommand(entry);
    return entry;
  };
  const backlog = () => readPoisonedBacklog(loyaltyUrl, SUBSCRIPTION, keys);

  const setUpAndProbe = async (): Promise<FlowProbeResult> => {
    await sql(
      loyaltyUrl,
      `ALTER TABLE movements ADD CONSTRAINT ${CONSTRAINT} CHECK (customer_id NOT LIKE 'poison-%')`,
    );
    schedule.record(
      'poison',
      'loyalty:movements',
      `CHECK (customer_id NOT LIKE 'poison-%') added`,
      'constraint',
    );
    for (const id of ids)
      await send('register', { id, name: `Poisoned ${id}`, address: '1 Poison Row' });
    schedule.record('poison-step', 'customers', `registered ${ids.join(', ')}`, 'register');
    const deadline = Date.now() + settings.setupBoundMs;
    await waitFor(async () => (await backlog()).deadLetteredKeys.length === keys.length, deadline);
    schedule.record(
      'poison-step',
      SUBSCRIPTION,
      `dead letters on ${(await backlog()).deadLetteredKeys.join(', ') || 'no key'}`,
      'dead-lettered',
    );
    // One customer's updates in order (each waits for its answer); the customers in parallel.
    await Promise.all(
      ids.map(async (id) => {
        for (let n = 1; n <= settings.updatesPerKey; n++)
          await send('update', { id, address: `${n} Poison Row`, updateId: uuidv7() });
      }),
    );
    await waitFor(async () => (await backlog()).pending >= settings.limit, deadline);
    schedule.record(
      'poison-step',
      SUBSCRIPTION,
      `${ids.length * settings.updatesPerKey} updates sent; ${(await backlog()).pending} entries wait behind the dead letters (limit ${settings.limit})`,
      'backlog',
    );
    const observation = await observeFlow({
      producerUrl: shop.databaseUrls.customers,
      subscriberUrl: loyaltyUrl,
      subscription: SUBSCRIPTION,
      poisonedKeys: keys,
      limit: settings.limit,
      boundMs: settings.flowBoundMs,
    });
    schedule.record(
      'poison-step',
      SUBSCRIPTION,
      `flow probe: cursor ${observation.cursor} of feed position ${observation.feedPosition} after ${observation.waitedMs} ms; ${observation.othersHeld} entries of other keys held`,
      'flow-probe',
    );
    return observation;
  };
  const observed = setUpAndProbe().catch((error: Error) => ({ failed: error.message }));

  return {
    observed,
    async heal() {
      await observed;
      await sql(loyaltyUrl, `ALTER TABLE movements DROP CONSTRAINT IF EXISTS ${CONSTRAINT}`);
      const db = new PgDatabase({ connectionString: loyaltyUrl, max: 1 });
      try {
        const result = await retryDeadLetters(db, { all: true, subscription: SUBSCRIPTION });
        schedule.record(
          'poison-step',
          SUBSCRIPTION,
          `constraint dropped; ${result.retried.length} dead letters retried`,
          'heal',
        );
      } finally {
        await db.close();
      }
    },
  };
}

/** Polls `check` every 250 ms until it holds or the deadline passes (the check reports a miss). */
async function waitFor(check: () => Promise<boolean>, deadline: number): Promise<void> {
  while (Date.now() < deadline && !(await check())) await new Promise((r) => setTimeout(r, 250));
}

async function sql(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, application_name: 'shop-chaos-poison' });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}
