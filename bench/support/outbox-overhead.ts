import { createBaton } from '../../src/baton.ts';
import type { BenchClusters } from './clusters.ts';
import { closeClients, closedLoop, openClients, type Txn } from './load.ts';
import { heading, say, table } from './report.ts';
import { median, percentile, round } from './stats.ts';

export interface OverheadOptions {
  clients: number;
  rounds: number;
  runMs: number;
}

export interface OverheadResult {
  clients: number;
  rounds: number;
  runMs: number;
  baselineTxPerSec: number;
  notifyTxPerSec: number;
  noNotifyTxPerSec: number;
  /** baseline tx/s ÷ with-publish tx/s (the defaults: one NOTIFY per 20 ms at most). */
  ratioNotify: number;
  /** Same with notifyOnPublish: false (the relay polls). */
  ratioNoNotify: number;
  /** Same with a NOTIFY in every publishing transaction (notifyMinIntervalMs: 0; before 0.1). */
  notifyEveryTxPerSec: number;
  ratioNotifyEvery: number;
  /**
   * The floor: the same transaction with one more plain INSERT instead of the
   * publish (no Baton) — what any second statement costs here.
   */
  secondInsertTxPerSec: number;
  ratioSecondInsert: number;
  perRound: {
    round: number;
    variant: Variant;
    txPerSec: number;
    p50Ms: number;
    p99Ms: number;
  }[];
}

type Variant =
  | 'baseline'
  | 'publish'
  | 'publish, no NOTIFY'
  | 'publish, NOTIFY every tx'
  | 'one more INSERT (no Baton)';

const INSERT_ORDER = 'INSERT INTO orders (client, amount, note) VALUES ($1, $2, $3) RETURNING id';

/**
 * The cost of the transactional outbox on the caller's transactions: N
 * clients each run BEGIN; INSERT one business row; [publish one event];
 * COMMIT, back to back. Variants run in rotating order, round after round,
 * and medians are compared, so drift (autovacuum, checkpoints, a neighbour's
 * load) hits all of them alike.
 */
export async function runOutboxOverhead(
  clusters: BenchClusters,
  options: OverheadOptions,
): Promise<OverheadResult> {
  heading('outbox overhead: business tx/s with and without publish');
  say(
    `Measures: ${options.clients} concurrent clients doing BEGIN; INSERT 1 row; [baton.publish 1 event]; COMMIT`,
  );
  say('  on a durable cluster (fsync on, synchronous_commit on), with the relay running (it');
  say('  sequences the rows concurrently, as in production; it wakes on NOTIFY or polls every');
  say(`  100 ms). ${options.rounds} rounds × 5 variants × ${options.runMs} ms, rotating order;`);
  say('  ratio = median over rounds of (baseline tx/s ÷ variant tx/s) within the round.');
  say('Does not measure: the feed, consumers, or network latency to a remote database.');

  const { url, db } = await clusters.database(clusters.producer, 'bench_overhead', 4);
  await db.query(
    `CREATE TABLE orders (id bigserial PRIMARY KEY, client int NOT NULL, amount int NOT NULL,
       note text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
  );
  const withNotify = createBaton({ db, service: 'orders' });
  const withoutNotify = createBaton({ db, service: 'orders', notifyOnPublish: false });
  const notifyEvery = createBaton({ db, service: 'orders', notifyMinIntervalMs: 0 });
  await withNotify.migrate();
  const relay = withNotify.relay({ pollIntervalMs: 100 });
  await relay.start();
  const clients = await openClients(url, options.clients);

  const txn = (publish: typeof withNotify.publish | 'insert' | undefined): Txn => {
    return async (client, index, n) => {
      await client.query('BEGIN');
      const r = await client.query<{ id: string }>(INSERT_ORDER, [index, n % 1000, 'bench order']);
      const id = r.rows[0]?.id ?? '';
      if (publish === 'insert') {
        await client.query(INSERT_ORDER, [index, n % 1000, 'second row']);
      } else if (publish) {
        await publish(client, {
          type: 'order.placed',
          key: `order-${id}`,
          payload: { orderId: id, client: index, amount: n % 1000 },
        });
      }
      await client.query('COMMIT');
      return 1;
    };
  };
  const variants: Record<Variant, Txn> = {
    baseline: txn(undefined),
    publish: txn((tx, e) => withNotify.publish(tx, e)),
    'publish, no NOTIFY': txn((tx, e) => withoutNotify.publish(tx, e)),
    'publish, NOTIFY every tx': txn((tx, e) => notifyEvery.publish(tx, e)),
    'one more INSERT (no Baton)': txn('insert'),
  };
  const order = Object.keys(variants) as Variant[];
  const perRound: OverheadResult['perRound'] = [];
  try {
    // Warm-up: fill caches and the relay's first passes; not counted.
    await closedLoop({ clients, durationMs: 500, eventsPerTx: 1, txn: variants.publish });
    for (let round = 0; round < options.rounds; round++) {
      const shift = round % order.length;
      const rotated = [...order.slice(shift), ...order.slice(0, shift)];
      for (const variant of rotated) {
        const r = await closedLoop({
          clients,
          durationMs: options.runMs,
          eventsPerTx: 1,
          txn: variants[variant],
        });
        perRound.push({
          round,
          variant,
          txPerSec: round2((r.transactions / r.durationMs) * 1000),
          p50Ms: round2(percentile(r.txLatenciesMs, 50)),
          p99Ms: round2(percentile(r.txLatenciesMs, 99)),
        });
      }
    }
  } finally {
    await closeClients(clients);
    await relay.stop();
  }

  const med = (v: Variant) =>
    median(perRound.filter((r) => r.variant === v).map((r) => r.txPerSec));
  // Each round runs every variant back to back, so a round's ratio compares
  // runs under the same background load; the median over rounds resists drift.
  const pairedRatio = (v: Variant) =>
    median(
      Array.from({ length: options.rounds }, (_, round) => {
        const of = (x: Variant) =>
          perRound.find((r) => r.round === round && r.variant === x)?.txPerSec ?? Number.NaN;
        return of('baseline') / of(v);
      }),
    );
  const baselineTxPerSec = med('baseline');
  const notifyTxPerSec = med('publish');
  const noNotifyTxPerSec = med('publish, no NOTIFY');
  const notifyEveryTxPerSec = med('publish, NOTIFY every tx');
  const result: OverheadResult = {
    ...options,
    baselineTxPerSec: round(baselineTxPerSec, 0),
    notifyTxPerSec: round(notifyTxPerSec, 0),
    noNotifyTxPerSec: round(noNotifyTxPerSec, 0),
    ratioNotify: round(pairedRatio('publish'), 3),
    ratioNoNotify: round(pairedRatio('publish, no NOTIFY'), 3),
    notifyEveryTxPerSec: round(notifyEveryTxPerSec, 0),
    ratioNotifyEvery: round(pairedRatio('publish, NOTIFY every tx'), 3),
    secondInsertTxPerSec: round(med('one more INSERT (no Baton)'), 0),
    ratioSecondInsert: round(pairedRatio('one more INSERT (no Baton)'), 3),
    perRound,
  };
  table([
    ['variant', 'median tx/s', 'median of per-round ratios', 'tx p50/p99 ms (median over rounds)'],
    ...order.map((v) => {
      const rows = perRound.filter((r) => r.variant === v);
      return [
        v,
        round(med(v), 0),
        v === 'baseline' ? '1.000' : round(pairedRatio(v), 3).toFixed(3),
        `${round(median(rows.map((r) => r.p50Ms)))} / ${round(median(rows.map((r) => r.p99Ms)))}`,
      ];
    }),
  ]);
  say(
    `outboxOverheadRatio = ${result.ratioNotify} (defaults: NOTIFY at most every 20 ms), ${result.ratioNoNotify} without NOTIFY, ${result.ratioNotifyEvery} with a NOTIFY in every transaction (target ≤ 1.10); floor: one more plain INSERT instead of the publish costs ${result.ratioSecondInsert}.`,
  );
  return result;
}

function round2(value: number): number {
  return round(value, 2);
}
