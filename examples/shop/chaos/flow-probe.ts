import pg from 'pg';
import type { FlowObservation } from './checks/dead-letter-flow.ts';

export interface FlowProbeOptions {
  /** The producer's database (its relay state holds the feed's last position). */
  producerUrl: string;
  /** The subscriber's database. */
  subscriberUrl: string;
  subscription: string;
  poisonedKeys: readonly string[];
  /** The consumer's backlog limit (`maxPendingEntries`). */
  limit: number;
  /** How long every other key may take to get through. */
  boundMs: number;
}

/** The poisoned keys' side of a subscription: which have a dead letter, and how much waits behind them. */
export interface PoisonedBacklog {
  deadLetteredKeys: string[];
  pending: number;
}

export async function readPoisonedBacklog(
  subscriberUrl: string,
  subscription: string,
  poisonedKeys: readonly string[],
): Promise<PoisonedBacklog> {
  return withClient(subscriberUrl, (client) => poisonedBacklog(client, subscription, poisonedKeys));
}

/**
 * Watches a subscription live while its poisoned keys are blocked: takes the
 * producer's feed position, then waits (at most `boundMs`) until the
 * subscription's cursor has reached it and every other key's entries up to
 * it are handled. Read-only; what it saw is judged by
 * `deadLetterBlocksOnlyItsKey` (checks/dead-letter-flow.ts).
 */
export async function observeFlow(options: FlowProbeOptions): Promise<FlowObservation> {
  const feedPosition = await withClient(options.producerUrl, async (client) =>
    Number((await client.query('SELECT last_seq FROM baton.relay_state')).rows[0]?.last_seq ?? 0),
  );
  return withClient(options.subscriberUrl, async (client) => {
    const backlog = await poisonedBacklog(client, options.subscription, options.poisonedKeys);
    const started = Date.now();
    for (;;) {
      const cursor = await cursorOf(client, options.subscription);
      const held = await othersHeld(client, options, feedPosition);
      const waitedMs = Date.now() - started;
      const through = cursor >= feedPosition && held.count === 0;
      if (through || waitedMs >= options.boundMs)
        return {
          subscription: options.subscription,
          poisonedKeys: [...options.poisonedKeys],
          limit: options.limit,
          deadLetteredKeys: backlog.deadLetteredKeys,
          poisonedPending: backlog.pending,
          feedPosition,
          cursor,
          boundMs: options.boundMs,
          waitedMs,
          othersHeld: held.count,
          othersHeldExamples: held.examples,
        };
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  });
}

async function poisonedBacklog(
  client: pg.Client,
  subscription: string,
  poisonedKeys: readonly string[],
): Promise<PoisonedBacklog> {
  const r = await client.query<{ key: string; dead: string; pending: string }>(
    `SELECT key, count(*) FILTER (WHERE status = 'dead') AS dead,
            count(*) FILTER (WHERE status = 'pending') AS pending
     FROM baton.inbox WHERE subscription = $1 AND key = ANY($2::text[]) GROUP BY key`,
    [subscription, poisonedKeys],
  );
  return {
    deadLetteredKeys: r.rows.filter((row) => Number(row.dead) > 0).map((row) => row.key),
    pending: r.rows.reduce((n, row) => n + Number(row.pending), 0),
  };
}

async function cursorOf(client: pg.Client, subscription: string): Promise<number> {
  const r = await client.query<{ cursor: string | null }>(
    'SELECT cursor FROM baton.subscriptions WHERE name = $1',
    [subscription],
  );
  // The feed position: the cursor itself (HTTP feed) or the part after `@` (NATS: <stream seq>@<position>).
  return Number(
    String(r.rows[0]?.cursor ?? 0)
      .split('@')
      .at(-1),
  );
}

/** Entries of keys that are not poisoned, received at or below `position`, not handled (yet). */
async function othersHeld(
  client: pg.Client,
  options: FlowProbeOptions,
  position: number,
): Promise<{ count: number; examples: FlowObservation['othersHeldExamples'] }> {
  const r = await client.query<{
    key: string;
    position: string;
    status: string;
    type: string | null;
    total: string;
  }>(
    `SELECT key, position, status, type, count(*) OVER () AS total FROM baton.inbox
     WHERE subscription = $1 AND status IN ('pending', 'dead') AND NOT (key = ANY($2::text[]))
       AND position ~ '^[0-9]+$' AND position::numeric <= $3
     ORDER BY id LIMIT 5`,
    [options.subscription, options.poisonedKeys, position],
  );
  return {
    count: Number(r.rows[0]?.total ?? 0),
    examples: r.rows.map(({ key, position: at, status, type }) => ({
      key,
      position: at,
      status,
      type,
    })),
  };
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'shop-chaos-probe' });
  client.on('error', () => {});
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}
