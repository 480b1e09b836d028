/**
 * The consuming service, in its own process so that its memory can be
 * measured alone: Baton's consumer reading the producer's HTTP feed, with a
 * trivial handler that writes one row per event in the handler transaction.
 * Started and stopped by `consumer-process.ts`.
 */
import { readFile } from 'node:fs/promises';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { createBaton } from '../../src/baton.ts';
import { type Logger, silentLogger } from '../../src/core/logger.ts';
import { PgDatabase } from '../../src/db/pg-database.ts';
import { natsSource } from '../../src/nats.ts';
import { httpFeedSource } from '../../src/transports/http-feed/feed-source.ts';
import type { EventSource } from '../../src/transports/transport.ts';
import type { ChildMessage, ConsumerChildConfig } from './consumer-config.ts';
import { wallMs } from './stats.ts';

const config = JSON.parse(process.env.BENCH_CONSUMER_CONFIG ?? '') as ConsumerChildConfig;
let errors = 0;

function send(message: ChildMessage): void {
  process.send?.(message);
}

/** Counts errors the consumer logs (a healthy run has none); prints the first few. */
const logger: Logger = {
  ...silentLogger,
  error: (fields: object, message?: string) => {
    if (errors++ < 3) process.stderr.write(`consumer child: ${message} ${describe(fields)}\n`);
  },
};

async function main(): Promise<void> {
  const { tuning } = config;
  const pool = new pg.Pool({
    connectionString: config.databaseUrl,
    max: tuning.concurrency + 3,
    application_name: 'bench-consumer',
  });
  const db = new PgDatabase({ pool });
  const baton = createBaton({ db, service: 'bench-consumer', logger });
  const nats = config.natsServers ? await connect({ servers: config.natsServers }) : undefined;
  const fetchedAt = new Map<string, number>();
  const read: EventSource = nats
    ? await natsSource({ connection: nats, service: 'producer' })
    : httpFeedSource({
        name: 'producer',
        url: config.feedUrl,
        auth: { type: 'hmac', secret: config.secret },
      });
  const source = config.stampFetch ? stampingFetches(read, fetchedAt) : read;
  const consumer = baton
    .consumer({ name: 'bench-from-producer', source, ...tuning })
    .subscribe(config.eventType, async (event, tx) => {
      const fetched = fetchedAt.get(event.id);
      fetchedAt.delete(event.id);
      await tx.query(
        'INSERT INTO handled (event_id, key, handled_at, fetched_ms) VALUES ($1, $2, clock_timestamp(), $3)',
        [event.id, event.key, fetched ?? null],
      );
    });
  await consumer.start();
  send({ type: 'ready' });
  process.on('message', async (message: { type?: string }) => {
    if (message?.type !== 'stop') return;
    await consumer.stop();
    await nats?.close();
    await db.close();
    await pool.end();
    send({ type: 'stopped', vmHwmKb: await vmHwmKb(), errors });
    process.disconnect?.();
  });
}

/** The source, noting the wall-clock time each fetched event reached this process. */
function stampingFetches(source: EventSource, fetchedAt: Map<string, number>): EventSource {
  return Object.assign(Object.create(source) as EventSource, {
    async fetch(request: Parameters<EventSource['fetch']>[0]) {
      const batch = await source.fetch(request);
      const now = wallMs();
      for (const item of batch.items) if (item.event) fetchedAt.set(item.event.id, now);
      return batch;
    },
  });
}

async function vmHwmKb(): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8');
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

function describe(fields: unknown): string {
  const err = (fields as { err?: unknown })?.err;
  return err instanceof Error ? err.message : JSON.stringify(fields);
}

main().catch((error: unknown) => {
  send({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
  process.exitCode = 1;
  process.disconnect?.();
});
