import type pg from 'pg';
import type { Baton, BatonEvent, EventSource, Relay } from '../../src/index.ts';
import { jitter, pick } from './ordering-random.ts';

export const ORDERING_TYPE = 'thing.changed';

export function thing(key: string, note = ''): { type: string; key: string; payload: unknown } {
  return { type: ORDERING_TYPE, key, payload: { key, note } };
}

/**
 * One publisher connection running `transactions` transactions, each
 * publishing 1–3 events on random keys and then committing (or, one time in
 * five, rolling back). Keys are taken in sorted order across a transaction's
 * calls, as an application should, so publishers cannot deadlock each other.
 * Returns the events of the committed transactions.
 */
export async function runPublisher(options: {
  client: pg.Client;
  baton: Baton;
  keys: readonly string[];
  transactions: number;
  random: () => number;
}): Promise<BatonEvent[]> {
  const { client, baton, keys, random } = options;
  const committed: BatonEvent[] = [];
  for (let t = 0; t < options.transactions; t++) {
    const chosen = Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(random, keys));
    chosen.sort();
    await client.query('BEGIN');
    const events: BatonEvent[] = [];
    if (random() < 0.3) {
      events.push(
        ...(await baton.publish(
          client,
          chosen.map((k) => thing(k, `t${t}`)),
        )),
      );
    } else {
      for (const key of chosen) {
        events.push(...(await baton.publish(client, thing(key, `t${t}`))));
        await jitter(random, 1);
      }
    }
    await jitter(random, 2);
    if (random() < 0.2) {
      await client.query('ROLLBACK');
    } else {
      await client.query('COMMIT');
      committed.push(...events);
    }
  }
  return committed;
}

/** Calls `relay.runOnce()` until `done()` says stop; returns how many rows this relay numbered. */
export async function relayUntil(
  relay: Relay,
  done: () => boolean,
  random: () => number,
): Promise<number> {
  let numbered = 0;
  while (!done()) {
    numbered += await relay.runOnce();
    await jitter(random, 2);
  }
  return numbered;
}

/**
 * Reads a feed the way a consumer does — strictly after its cursor — and
 * keeps everything it gets. A relay that handed out a position lower than one
 * already visible would make this reader miss that event for good.
 */
export class FeedReader {
  cursor: string | undefined;
  readonly events: (BatonEvent & { position: string })[] = [];
  readonly problems: string[] = [];

  constructor(
    private readonly source: EventSource,
    private readonly limit = 5,
  ) {}

  /** One page; returns how many items it read. */
  async readPage(): Promise<number> {
    const batch = await this.source.fetch({
      cursor: this.cursor,
      limit: this.limit,
      waitMs: 0,
      types: [ORDERING_TYPE],
      signal: new AbortController().signal,
    });
    for (const item of batch.items) {
      if (item.event) this.events.push({ ...item.event, position: item.position });
      else this.problems.push(`undecodable item at ${item.position}: ${item.problem}`);
    }
    this.cursor = batch.cursor;
    return batch.items.length;
  }

  async readUntil(done: () => boolean, random: () => number): Promise<void> {
    while (!done()) {
      await this.readPage();
      await jitter(random, 3);
    }
  }

  async drain(): Promise<void> {
    while ((await this.readPage()) > 0) {}
  }
}
