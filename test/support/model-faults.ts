import type {
  Database,
  EventSource,
  Executor,
  FetchedBatch,
  FetchRequest,
  QueryResult,
} from '../../src/index.ts';

/** The error every injected crash throws; anything else escaping a command is a real failure. */
export class SimulatedCrash extends Error {
  override readonly name = 'SimulatedCrash';
}

/** A handler failure the model injects (the handler throws after doing its writes). */
export class InjectedHandlerFailure extends Error {
  override readonly name = 'InjectedHandlerFailure';
}

/** A crash that can be armed for the next step (after letting `after` transactions commit). */
export interface Fault {
  arm(after?: number): void;
  disarm(): void;
}

/** Passes everything through to a real `Database`; subclasses add one fault each. */
class DatabaseWrapper implements Database {
  constructor(protected readonly inner: Database) {}

  query<R = Record<string, unknown>>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    return this.inner.query<R>(text, values);
  }

  transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T> {
    return this.inner.transaction(fn);
  }

  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>> {
    return this.inner.listen(channel, onNotify);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * The relay's process dying in the middle of a pass: once armed, the next
 * transaction that runs the sequencing statement (it updates `relay_state`
 * from the numbered batch) throws right after it, before COMMIT. The real
 * transaction then rolls back, as it would when the connection dies.
 */
export class RelayCrashDatabase extends DatabaseWrapper implements Fault {
  private armed = false;

  arm(): void {
    this.armed = true;
  }

  disarm(): void {
    this.armed = false;
  }

  override transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T> {
    return this.inner.transaction((tx) => fn(this.watch(tx)));
  }

  private watch(tx: Executor): Executor {
    return {
      query: async <R>(text: string, values?: unknown[]) => {
        const result = await tx.query<R>(text, values);
        if (this.armed && /UPDATE\s+\S+\.relay_state/.test(text) && text.includes('numbered')) {
          this.armed = false;
          throw new SimulatedCrash('relay died after sequencing, before COMMIT');
        }
        return result;
      },
    };
  }
}

/**
 * A consumer's transaction dying after its work is done (handler ran, entry
 * marked handled) but before COMMIT. `arm(after)` lets `after` transactions
 * commit first (0: the next one dies); the real transaction then rolls back.
 * Letting one through first also hits a second transaction of the same step
 * (the careful retry after a failed batch, or any bookkeeping that a broken
 * consumer would commit separately from the handler's effects).
 */
export class CommitCrashDatabase extends DatabaseWrapper implements Fault {
  private crashAt: number | undefined;

  arm(after = 0): void {
    this.crashAt = after;
  }

  disarm(): void {
    this.crashAt = undefined;
  }

  override transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T> {
    return this.inner.transaction(async (tx) => {
      const result = await fn(tx);
      if (this.crashAt !== undefined && this.crashAt-- === 0) {
        this.crashAt = undefined;
        throw new SimulatedCrash('handler transaction died before COMMIT');
      }
      return result;
    });
  }
}

/**
 * A consumer dying between fetch and ingest: once armed, the next fetch
 * really reads the feed, then the batch is thrown away.
 */
export class DroppingSource implements EventSource, Fault {
  private armed = false;
  readonly name: string;

  constructor(private readonly inner: EventSource) {
    this.name = inner.name;
  }

  arm(): void {
    this.armed = true;
  }

  disarm(): void {
    this.armed = false;
  }

  async fetch(request: FetchRequest): Promise<FetchedBatch> {
    const batch = await this.inner.fetch(request);
    if (this.armed) {
      this.armed = false;
      throw new SimulatedCrash(`consumer died holding ${batch.items.length} fetched events`);
    }
    return batch;
  }
}
