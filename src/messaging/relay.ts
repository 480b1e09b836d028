import { type Logger, silentLogger } from '../core/logger.ts';
import { check, withDefaults } from '../core/options.ts';
import { noTelemetry, type Telemetry } from '../core/telemetry.ts';
import { WakeSignal } from '../core/wake-signal.ts';
import type { Database, Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';
import type { OutboxReader, SequencedEvent, Transport } from '../transports/transport.ts';
import { type EventColumns, toBatonEvent } from './event-row.ts';

export interface RelayOptions {
  db: Database;
  /** Unquoted schema name (for the lock key) and its quoted form (for SQL). */
  schema: string;
  schemaSql: string;
  /** Channel the outbox NOTIFYs on commit; the relay LISTENs to it. */
  outboxChannel: string;
  /** Channel the relay NOTIFYs after sequencing; feed long-polls LISTEN to it. */
  feedChannel: string;
  transport?: Transport;
  /** Rows sequenced per transaction. */
  batchSize?: number;
  /** Fallback polling interval when no NOTIFY arrives (also the standby relay's retry). */
  pollIntervalMs?: number;
  /**
   * While events arrive, and for `activeForMs` after the last one or the last
   * NOTIFY, the relay polls every `activePollIntervalMs` instead: publishers
   * NOTIFY at most once per interval (see `Outbox`), and this finds the
   * transactions in between.
   */
  activePollIntervalMs?: number;
  activeForMs?: number;
  /** How long relayed rows stay (the feed can serve them; a slower consumer loses nothing within it). */
  retentionMs?: number;
  pruneIntervalMs?: number;
  logger?: Logger;
  /** Where the relay counts what it numbers (the service's metrics). */
  telemetry?: Telemetry;
}

export type CompiledRelayOptions = Readonly<
  Required<Omit<RelayOptions, 'transport'>> & { transport?: Transport }
>;

/** The relay's options, defaults applied key by key, checked, frozen. */
export function compileRelayOptions(options: RelayOptions): CompiledRelayOptions {
  const o = withDefaults<RelayOptions>(options, {
    ...options,
    batchSize: 1000,
    pollIntervalMs: 500,
    activePollIntervalMs: 5,
    activeForMs: 250,
    retentionMs: 7 * 24 * 3600_000,
    pruneIntervalMs: 60_000,
    logger: silentLogger,
    telemetry: noTelemetry,
  }) as Required<RelayOptions>;
  check.integer('relay', 'batchSize', o.batchSize, 1, 100_000);
  for (const name of [
    'pollIntervalMs',
    'activePollIntervalMs',
    'activeForMs',
    'retentionMs',
    'pruneIntervalMs',
  ] as const)
    check.ms('relay', name, o[name]);
  return Object.freeze(o);
}

/**
 * Moves committed outbox rows to the transport, in commit order.
 *
 * How it never skips and never reorders a key: it does not read by a cursor
 * at all. Each pass takes the committed rows that have no feed position yet
 * (`seq IS NULL`) and numbers them after the last position, in one
 * transaction holding the relay's advisory lock — so only one relay numbers
 * at a time and positions are handed out in the order those transactions
 * commit. A row whose transaction commits late simply gets a later position.
 * Within a key, version n+1 cannot commit before version n (the publisher
 * holds the key's counter row lock), so a pass that sees n+1 also sees n,
 * and numbering by insertion id keeps n before n+1.
 *
 * Several relay processes on one database are safe: the one holding the lock
 * works, the others stand by and take over when it dies (the lock is
 * transaction-scoped, so a dead relay's lock is released with its
 * connection).
 *
 * Push transports: in the same transaction the relay sends the newly numbered
 * rows, then records them as dispatched; a crash between the two re-sends
 * them (the transport deduplicates by event id).
 */
export class Relay {
  private readonly o: CompiledRelayOptions;
  private readonly signal = new WakeSignal();
  private running: Promise<void> | undefined;
  private stopping = false;
  private unlisten: (() => Promise<void>) | undefined;
  private lastPrune = 0;
  /** Until when the relay polls at the short, active interval. */
  private activeUntil = 0;
  private readonly sequenceSql: string;
  private readonly workSql: string;
  private readonly lockKey: string;

  constructor(options: RelayOptions) {
    this.o = compileRelayOptions(options);
    const s = this.o.schemaSql;
    this.lockKey = `baton:relay:${this.o.schema}`;
    // One index probe, outside any transaction: while events flow the relay polls every
    // few ms, and most polls find nothing (the bench counted 4 statements per empty poll).
    this.workSql = `
      SELECT EXISTS (SELECT 1 FROM ${s}.outbox WHERE seq IS NULL)
        OR ($1::boolean AND EXISTS (
          SELECT 1 FROM ${s}.outbox WHERE seq > (SELECT dispatched_through FROM ${s}.relay_state)
        )) AS work`;
    this.sequenceSql = `
      WITH batch AS (
        SELECT id FROM ${s}.outbox WHERE seq IS NULL ORDER BY id LIMIT $1 FOR UPDATE
      ), numbered AS (
        SELECT id, (SELECT last_seq FROM ${s}.relay_state) + row_number() OVER (ORDER BY id) AS seq
        FROM batch
      ), assigned AS (
        UPDATE ${s}.outbox o SET seq = n.seq, relayed_at = now()
        FROM numbered n WHERE o.id = n.id
        RETURNING o.seq
      )
      UPDATE ${s}.relay_state
      SET last_seq = last_seq + (SELECT count(*) FROM assigned)
      WHERE EXISTS (SELECT 1 FROM assigned)
      RETURNING last_seq, (SELECT count(*) FROM assigned)::int AS n`;
  }

  /** Starts the relay loop in the background. */
  async start(): Promise<void> {
    if (this.running) return;
    this.stopping = false;
    this.unlisten = await this.o.db.listen(this.o.outboxChannel, () => this.wake());
    this.o.transport?.attach?.(this.outboxReader());
    this.running = this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.signal.wake();
    await this.running;
    this.running = undefined;
    await this.unlisten?.();
    this.unlisten = undefined;
    await this.o.transport?.detach?.();
  }

  /** What a push transport may read of the outbox to repair a broker's loss. */
  outboxReader(): OutboxReader {
    const s = this.o.schemaSql;
    return {
      read: async (from, to) => {
        const state = await this.o.db.query<{ pruned_through: string; dispatched_through: string }>(
          `SELECT pruned_through, dispatched_through FROM ${s}.relay_state`,
        );
        const prunedThrough = Number(state.rows[0]?.pruned_through ?? 0);
        const rows = await this.o.db.query<EventRow>(
          `SELECT ${EVENT_COLUMNS} FROM ${s}.outbox
           WHERE seq BETWEEN $1 AND least($2::bigint, (SELECT dispatched_through FROM ${s}.relay_state))
           ORDER BY seq`,
          [from, to],
        );
        return { events: rows.rows.map(toSequencedEvent), prunedThrough };
      },
      dispatchedThrough: async () => {
        const state = await this.o.db.query<{ dispatched_through: string }>(
          `SELECT dispatched_through FROM ${s}.relay_state`,
        );
        return Number(state.rows[0]?.dispatched_through ?? 0);
      },
    };
  }

  /** Wakes the loop now (e.g. right after a local publish committed). */
  wake(): void {
    this.activeUntil = Date.now() + this.o.activeForMs;
    this.signal.wake();
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      let moved = 0;
      try {
        moved = await this.runOnce();
        await this.pruneIfDue();
        failures = 0;
      } catch (error) {
        failures++;
        this.o.logger.error({ err: error, failures }, 'baton relay pass failed; retrying');
      }
      if (this.stopping) break;
      if (moved >= this.o.batchSize) continue;
      if (moved > 0) this.activeUntil = Date.now() + this.o.activeForMs;
      await this.signal.wait(this.nextWaitMs(failures));
    }
  }

  private nextWaitMs(failures: number): number {
    if (failures > 0) return Math.min(30_000, 100 * 2 ** failures);
    return Date.now() < this.activeUntil ? this.o.activePollIntervalMs : this.o.pollIntervalMs;
  }

  /**
   * One pass: number the committed unsequenced rows (up to one batch) and, for
   * a push transport, send them. Returns how many rows were sequenced; 0 also
   * when another relay holds the lock.
   */
  async runOnce(): Promise<number> {
    const push = this.o.transport?.send !== undefined;
    const probe = await queryPrepared<{ work: boolean }>(this.o.db, this.workSql, [push]);
    if (probe.rows[0]?.work !== true) return 0;
    const n = await this.o.db.transaction(async (tx) => {
      const lock = await queryPrepared<{ got: boolean }>(
        tx,
        'SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS got',
        [this.lockKey],
      );
      if (!lock.rows[0]?.got) return 0;
      if (this.o.transport?.send)
        await this.dispatch(tx, this.o.transport.send.bind(this.o.transport));
      const result = await queryPrepared<{ last_seq: string; n: number }>(tx, this.sequenceSql, [
        this.o.batchSize,
      ]);
      const n = result.rows[0]?.n ?? 0;
      if (n > 0) {
        await queryPrepared(tx, 'SELECT pg_notify($1, $2)', [
          this.o.feedChannel,
          result.rows[0]?.last_seq ?? '',
        ]);
        if (this.o.transport?.send)
          await this.dispatch(tx, this.o.transport.send.bind(this.o.transport));
      }
      return n;
    });
    if (n > 0) this.o.telemetry.relayed(n);
    return n;
  }

  /** Sends sequenced-but-undispatched rows in seq order, then records them. */
  private async dispatch(
    tx: Executor,
    send: (events: SequencedEvent[]) => Promise<void>,
  ): Promise<void> {
    const s = this.o.schemaSql;
    for (;;) {
      const rows = await queryPrepared<EventRow>(
        tx,
        `SELECT ${EVENT_COLUMNS} FROM ${s}.outbox
         WHERE seq > (SELECT dispatched_through FROM ${s}.relay_state)
         ORDER BY seq LIMIT $1`,
        [this.o.batchSize],
      );
      if (rows.rows.length === 0) return;
      const events = rows.rows.map(toSequencedEvent);
      await send(events);
      const last = events.at(-1)?.seq ?? 0;
      await queryPrepared(
        tx,
        `WITH d AS (UPDATE ${s}.outbox SET dispatched_at = now() WHERE seq <= $1 AND dispatched_at IS NULL)
         UPDATE ${s}.relay_state SET dispatched_through = $1`,
        [last],
      );
      if (rows.rows.length < this.o.batchSize) return;
    }
  }

  /**
   * Deletes rows relayed (and dispatched) longer ago than the retention, in
   * chunks, and records the highest position pruned so the feed can tell a
   * consumer that asks for older positions that they are gone.
   */
  async pruneIfDue(now = Date.now()): Promise<number> {
    if (now - this.lastPrune < this.o.pruneIntervalMs) return 0;
    this.lastPrune = now;
    const s = this.o.schemaSql;
    const dispatchedOnly = this.o.transport?.send ? 'AND dispatched_at IS NOT NULL' : '';
    const result = await queryPrepared<{ n: string }>(
      this.o.db,
      `WITH cutoff AS (
         SELECT max(seq) AS seq FROM ${s}.outbox
         WHERE seq IS NOT NULL AND relayed_at < now() - make_interval(secs => $1::double precision / 1000) ${dispatchedOnly}
       ), gone AS (
         DELETE FROM ${s}.outbox WHERE seq <= (SELECT seq FROM cutoff) RETURNING 1
       ), st AS (
         UPDATE ${s}.relay_state SET pruned_through = greatest(pruned_through, (SELECT seq FROM cutoff))
         WHERE (SELECT seq FROM cutoff) IS NOT NULL
       )
       SELECT count(*)::text AS n FROM gone`,
      [this.o.retentionMs],
    );
    return Number(result.rows[0]?.n ?? 0);
  }
}

export const EVENT_COLUMNS = `seq, event_id::text AS id, type, key, version, payload, headers,
  occurred_at, source`;

export interface EventRow extends EventColumns {
  seq: string;
}

export function toSequencedEvent(row: EventRow): SequencedEvent {
  return { seq: Number(row.seq), ...toBatonEvent(row) };
}
