/** What the parent tells the consumer child (as JSON in BENCH_CONSUMER_CONFIG). */
export interface ConsumerChildConfig {
  databaseUrl: string;
  feedUrl: string;
  secret: string;
  eventType: string;
  tuning: ConsumerTuning;
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
  handled_at timestamptz NOT NULL
)`;
