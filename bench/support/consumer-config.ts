/** What the parent tells the consumer child (as JSON in BENCH_CONSUMER_CONFIG). */
export interface ConsumerChildConfig {
  databaseUrl: string;
  /** The producer's HTTP feed; unused when `natsServers` is given. */
  feedUrl: string;
  /** Read the producer's JetStream stream on this cluster instead of its HTTP feed. */
  natsServers?: string[];
  secret: string;
  eventType: string;
  tuning: ConsumerTuning;
  /**
   * Stamp each event with the time its batch reached the consumer (the
   * source's fetch resolved), in `handled.fetched_ms`: the latency run's
   * split of the hop between the producer's feed and the consumer.
   */
  stampFetch?: boolean;
}

/** The consumer options the benchmark varies. */
export interface ConsumerTuning {
  batchSize: number;
  handleBatchSize: number;
  concurrency: number;
  fetchWaitMs: number;
  maxPendingEntries: number;
}

/** Messages from the child to the parent (over the fork IPC channel). */
export type ChildMessage =
  | { type: 'ready' }
  | { type: 'stopped'; vmHwmKb: number; errors: number }
  | { type: 'failed'; message: string };

/** The consumer's table: one row per handled event, stamped with the consumer database's clock. */
export const HANDLED_TABLE_SQL = `CREATE TABLE handled (
  event_id uuid PRIMARY KEY,
  key text NOT NULL,
  handled_at timestamptz NOT NULL,
  fetched_ms float8
)`;

/** Consumer defaults as shipped (for comparison in the full run's sweep). */
export const SHIPPED: ConsumerTuning = {
  batchSize: 500,
  handleBatchSize: 100,
  concurrency: 2,
  fetchWaitMs: 10_000,
  maxPendingEntries: 20_000,
};

/** Batches twice the shipped size, two workers: the starting point of the sweep. */
export const BIGGER: ConsumerTuning = { ...SHIPPED, batchSize: 1000, handleBatchSize: 200 };

/** The best configuration of the full run's sweep (see README), used by --quick. */
export const TUNED: ConsumerTuning = { ...BIGGER, concurrency: 4 };
