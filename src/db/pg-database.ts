import pg from 'pg';
import { TransactionRolledBackError } from '../core/errors.ts';
import type { Database, Executor, QueryResult } from './executor.ts';
import { type PreparingExecutor, withoutPreparedStatements } from './prepared.ts';
import { quoteIdent } from './sql.ts';

export interface PgDatabaseOptions {
  /** Connection string, or an existing pool (which the caller keeps owning). */
  connectionString?: string;
  pool?: pg.Pool;
  /** Pool size when Baton creates the pool. */
  max?: number;
  applicationName?: string;
  /**
   * How long to keep trying to get a connection while PostgreSQL cannot take
   * one yet — refused, starting up, in crash recovery, shutting down for a
   * restart — before failing with the last error. Default 15 s; 0 fails at
   * once (the CLI does: an operator wants the error now). Only connecting is
   * retried, never a statement.
   */
  connectRetryMs?: number;
  /**
   * Run Baton's hot statements as named prepared statements (parsed and
   * planned once per connection). Default true. Turn off behind a pooler that
   * cannot keep them (PgBouncer in transaction mode before 1.21).
   */
  preparedStatements?: boolean;
}

/** Errors that mean "no connection yet", not "this statement failed". */
const NOT_YET = new Set(['57P03', '57P01', '08001', '08006', 'ECONNREFUSED', 'ECONNRESET']);

/**
 * Whether `error` means the connection to PostgreSQL was refused, lost or not
 * yet possible (a restart, crash recovery) — something that trying again
 * later can cure — rather than a statement's own failure.
 */
export function isConnectionError(error: unknown): boolean {
  const e = error as { code?: string; message?: string } | undefined;
  return (
    (e?.code !== undefined && NOT_YET.has(e.code)) || /Connection terminated/.test(e?.message ?? '')
  );
}

/**
 * `Database` over a node-postgres pool. Transactions run under READ COMMITTED
 * (the level every Baton protocol is written for). LISTEN uses one dedicated
 * connection per database object, shared by all channels, re-established
 * after a connection loss.
 */
export class PgDatabase implements Database, PreparingExecutor {
  readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private listener: pg.Client | undefined;
  private listenerReady: Promise<pg.Client> | undefined;
  private readonly channels = new Map<string, Set<(payload: string) => void>>();
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly connectRetryMs: number;
  private readonly preparedStatements: boolean;

  constructor(options: PgDatabaseOptions) {
    this.connectRetryMs = options.connectRetryMs ?? 15_000;
    this.preparedStatements = options.preparedStatements ?? true;
    if (options.pool) {
      this.pool = options.pool;
      this.ownsPool = false;
    } else {
      this.pool = new pg.Pool({
        connectionString: options.connectionString,
        max: options.max ?? 10,
        application_name: options.applicationName ?? 'baton',
      });
      this.ownsPool = true;
    }
    // An idle client losing its connection must not crash the process.
    this.pool.on('error', () => {});
  }

  query<R = Record<string, unknown>>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    return this.withClient(
      async (client) => (await client.query(text, values)) as unknown as QueryResult<R>,
    );
  }

  /** Runs a statement by name (prepared once per connection), or plainly if prepared statements are off. */
  queryPrepared<R = Record<string, unknown>>(
    name: string,
    text: string,
    values: unknown[],
  ): Promise<QueryResult<R>> {
    return this.withClient(
      async (client) =>
        (await client.query(
          this.preparedStatements ? { name, text, values } : { text, values },
        )) as unknown as QueryResult<R>,
    );
  }

  /**
   * Runs `fn` on a pooled connection and gives it back — discarded instead if
   * the connection broke on the way. A checked-out client whose connection dies
   * (server restart, network) emits 'error'; unhandled, that would crash the
   * process. The failing query rejects on its own; here the client is only
   * marked to be discarded.
   */
  private async withClient<T>(
    fn: (client: pg.PoolClient, markBroken: () => void) => Promise<T>,
  ): Promise<T> {
    const client = await this.connect();
    let broken = false;
    const markBroken = () => {
      broken = true;
    };
    client.on('error', markBroken);
    try {
      return await fn(client, markBroken);
    } catch (error) {
      if (isConnectionError(error)) broken = true;
      throw error;
    } finally {
      client.off('error', markBroken);
      client.release(broken);
    }
  }

  /** A pooled connection; waits (up to `connectRetryMs`) while the server cannot take one yet. */
  private async connect(): Promise<pg.PoolClient> {
    const client = await this.whenConnectable(() => this.pool.connect());
    // Transactions hand this client to Baton's statements as `tx`.
    return this.preparedStatements ? client : withoutPreparedStatements(client);
  }

  /** Runs `open` again with backoff while it fails because the server cannot take connections yet. */
  private async whenConnectable<C>(open: () => Promise<C>): Promise<C> {
    const deadline = Date.now() + this.connectRetryMs;
    for (let delay = 100; ; delay = Math.min(delay * 2, 1_000)) {
      try {
        return await open();
      } catch (error) {
        if (!isConnectionError(error) || this.closed || Date.now() + delay > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T> {
    return this.withClient(async (client, markBroken) => {
      try {
        await client.query('BEGIN ISOLATION LEVEL READ COMMITTED');
        const result = await fn(client as unknown as Executor);
        // COMMIT of an aborted transaction answers ROLLBACK without an error:
        // a caller that swallowed a failed statement must not be told it committed.
        const commit = await client.query('COMMIT');
        if (commit.command === 'ROLLBACK') throw new TransactionRolledBackError();
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(markBroken);
        throw error;
      }
    });
  }

  async listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>> {
    let set = this.channels.get(channel);
    const first = !set;
    if (!set) {
      set = new Set();
      this.channels.set(channel, set);
    }
    set.add(onNotify);
    try {
      const client = await this.connectListener();
      if (first) await client.query(`LISTEN ${quoteIdent(channel)}`);
    } catch (error) {
      // Leave nothing registered: the caller sees the error and may try again.
      set.delete(onNotify);
      if (set.size === 0 && this.channels.get(channel) === set) this.channels.delete(channel);
      throw error;
    }
    return async () => {
      set.delete(onNotify);
      if (set.size === 0 && this.channels.get(channel) === set) {
        this.channels.delete(channel);
        await this.listener?.query(`UNLISTEN ${quoteIdent(channel)}`).catch(() => {});
      }
    };
  }

  private connectListener(): Promise<pg.Client> {
    if (!this.listenerReady) {
      this.listenerReady = this.openListener().catch((error) => {
        this.listenerReady = undefined;
        throw error;
      });
    }
    return this.listenerReady;
  }

  private openListener(): Promise<pg.Client> {
    return this.whenConnectable(async () => {
      const client = new pg.Client(this.pool.options);
      client.on('notification', (msg) => {
        for (const fn of this.channels.get(msg.channel) ?? []) fn(msg.payload ?? '');
      });
      client.on('error', () => this.dropListener(client));
      client.on('end', () => this.dropListener(client));
      await client.connect();
      this.listener = client;
      return client;
    });
  }

  /** After a lost LISTEN connection, wake everyone (notifies may have been missed) and re-LISTEN. */
  private dropListener(client: pg.Client): void {
    if (this.listener !== client) return;
    this.listener = undefined;
    this.listenerReady = undefined;
    if (this.closed) return;
    for (const fns of this.channels.values()) for (const fn of fns) fn('');
    this.relistenSoon();
  }

  private relistenSoon(): void {
    setTimeout(() => {
      if (this.closed || this.channels.size === 0) return;
      this.connectListener()
        .then(async (c) => {
          for (const channel of this.channels.keys())
            await c.query(`LISTEN ${quoteIdent(channel)}`);
        })
        .catch(() => this.relistenSoon());
    }, 500).unref();
  }

  /** Ends the listener and (when this owns it) the pool. Idempotent: every call waits for the one close. */
  close(): Promise<void> {
    this.closing ??= this.end();
    return this.closing;
  }

  private async end(): Promise<void> {
    this.closed = true;
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => {});
    if (this.ownsPool) await this.pool.end();
  }
}
