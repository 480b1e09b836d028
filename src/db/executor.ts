/**
 * The one thing Baton needs from a database client: run a parameterised
 * statement. A node-postgres `Client` or `PoolClient` satisfies it as it is,
 * so `publish(client, …)` joins the caller's own transaction; adapters for
 * postgres.js, Prisma, Drizzle and Kysely only have to provide `query`.
 */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number | null;
}

export interface Executor {
  query<R = Record<string, unknown>>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

/**
 * What Baton's own workers need: statements, transactions they own, and
 * LISTEN for wake-ups. `baton/pg` provides it over a `pg.Pool`.
 */
export interface Database extends Executor {
  /** Runs `fn` in a READ COMMITTED transaction; commits if it resolves, rolls back if it throws. */
  transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T>;
  /** Calls `onNotify` for every NOTIFY on `channel` until the returned function is called. */
  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}
