import type pg from 'pg';
import type {
  Baton,
  BatonEvent,
  Consumer,
  EventHandler,
  Executor,
  Relay,
} from '../../src/index.ts';
import {
  type CommitCrashDatabase,
  type DroppingSource,
  type Fault,
  InjectedHandlerFailure,
  type RelayCrashDatabase,
  SimulatedCrash,
} from './model-faults.ts';
import { feedProblems, perKeyVersionProblems, readOutbox } from './ordering-outbox.ts';

export const MODEL_TYPE = 'item.changed';
export const MODEL_SUBSCRIPTION = 'model-from-items';
export const MODEL_SLOTS = 2;

/** What the model can do; drawn at random by fast-check. */
export type ModelCommand =
  /** One transaction publishing one event per listed key (a key may repeat), in one call. */
  | { op: 'publish'; keys: string[]; commit: boolean; failFirst: boolean }
  | { op: 'open'; slot: number; key: string; failFirst: boolean }
  | { op: 'close'; slot: number; commit: boolean }
  | { op: 'relay' }
  | { op: 'relay-crash' }
  | { op: 'fetch' }
  | { op: 'fetch-crash' }
  /** Fetch where the (`at`+1)-th consumer transaction (the ingest) dies before COMMIT. */
  | { op: 'ingest-crash'; at: number }
  | { op: 'handle'; careful: boolean }
  /** Handling where the (`at`+1)-th transaction dies before COMMIT. */
  | { op: 'handle-crash'; careful: boolean; at: number }
  | { op: 'restart'; relay: boolean; consumer: boolean };

/** The long-lived parts shared by all runs: two real databases behind fault-injecting wrappers. */
export interface ModelEnv {
  /** The producer's database as its relay sees it (can die mid-pass). */
  producerDb: RelayCrashDatabase;
  /** The consumer's database as its consumer sees it (a transaction can die before COMMIT). */
  consumerDb: CommitCrashDatabase;
  /** The feed as the consumer reads it (a fetched batch can be lost). */
  source: DroppingSource;
  producer: Baton;
  consumerBaton: Baton;
  /** Dedicated producer connections for transactions that stay open across commands. */
  slots: readonly pg.Client[];
}

export const MODEL_TABLES_SQL = `
  CREATE TABLE effects (event_id uuid PRIMARY KEY, key text NOT NULL, version int NOT NULL,
    n int NOT NULL);
  CREATE TABLE handled_log (at bigserial PRIMARY KEY, key text NOT NULL, version int NOT NULL);`;

/** Puts both databases back to empty, with the subscription row a started consumer would create. */
export async function resetModel(env: ModelEnv): Promise<void> {
  for (const slot of env.slots) await slot.query('ROLLBACK');
  await env.producerDb.query('TRUNCATE baton.outbox, baton.stream_versions RESTART IDENTITY');
  await env.producerDb.query(
    'UPDATE baton.relay_state SET last_seq = 0, pruned_through = 0, dispatched_through = 0',
  );
  await env.consumerDb.query(
    'TRUNCATE baton.inbox, baton.subscriptions, effects, handled_log RESTART IDENTITY',
  );
  // fetchOnce() without start() needs the row start() would upsert.
  await env.consumerDb.query(
    'INSERT INTO baton.subscriptions (name, source, types) VALUES ($1, $2, $3)',
    [MODEL_SUBSCRIPTION, env.source.name, [MODEL_TYPE]],
  );
  env.producerDb.disarm();
  env.consumerDb.disarm();
  env.source.disarm();
}

/** Writes the effect and the log line, then fails if the event asks for it on its first attempt. */
const handler: EventHandler = async (event, tx, ctx) => {
  await tx.query(
    `INSERT INTO effects (event_id, key, version, n) VALUES ($1, $2, $3, 1)
     ON CONFLICT (event_id) DO UPDATE SET n = effects.n + 1`,
    [event.id, event.key, event.version],
  );
  await tx.query('INSERT INTO handled_log (key, version) VALUES ($1, $2)', [
    event.key,
    event.version,
  ]);
  if ((event.payload as { failFirst?: boolean }).failFirst && ctx.attempt === 0) {
    throw new InjectedHandlerFailure(`first attempt at ${event.key} v${event.version} fails`);
  }
};

interface OpenTransaction {
  keys: Set<string>;
  events: BatonEvent[];
}

/** One model run: the live relay and consumer objects, and what should have happened. */
export class ModelRun {
  private relay: Relay;
  private consumer: Consumer;
  private readonly committed: BatonEvent[] = [];
  private readonly rolledBack = new Set<string>();
  private readonly open = new Map<number, OpenTransaction>();

  constructor(private readonly env: ModelEnv) {
    this.relay = this.newRelay();
    this.consumer = this.newConsumer();
  }

  private newRelay(): Relay {
    return this.env.producer.relay({ batchSize: 2 });
  }

  private newConsumer(): Consumer {
    return this.env.consumerBaton
      .consumer({
        name: MODEL_SUBSCRIPTION,
        source: this.env.source,
        batchSize: 3,
        handleBatchSize: 3,
        fetchWaitMs: 0,
        maxAttempts: 1000,
        backoff: { baseMs: 0, maxMs: 0 },
      })
      .subscribe(MODEL_TYPE, handler);
  }

  async run(command: ModelCommand): Promise<void> {
    switch (command.op) {
      case 'publish':
        return this.publish(command.keys, command.commit, command.failFirst);
      case 'open':
        return this.publishOpen(command.slot, command.key, command.failFirst);
      case 'close':
        return this.close(command.slot, command.commit);
      case 'relay':
        await this.relay.runOnce();
        return;
      case 'relay-crash': {
        // With nothing committed to number the relay opens no transaction (one probe, no
        // crash point); with something, the crash must fire.
        const work = (await readOutbox(this.env.producerDb)).some((r) => r.seq === null);
        if (work) return this.mustCrash(this.env.producerDb, () => this.relay.runOnce());
        await this.crashing(this.env.producerDb, () => this.relay.runOnce());
        return;
      }
      case 'fetch':
        await this.consumer.fetchOnce(0);
        return;
      case 'fetch-crash':
        return this.mustCrash(this.env.source, () => this.consumer.fetchOnce(0));
      case 'ingest-crash':
        await this.crashing(this.env.consumerDb, () => this.consumer.fetchOnce(0), command.at);
        return;
      case 'handle':
        await this.handle(command.careful);
        return;
      case 'handle-crash':
        await this.crashing(this.env.consumerDb, () => this.handle(command.careful), command.at);
        return;
      case 'restart':
        // A new process: nothing survives but what the databases hold.
        if (command.relay) this.relay = this.newRelay();
        if (command.consumer) this.consumer = this.newConsumer();
        return;
    }
  }

  private heldByOpen(key: string, exceptSlot?: number): boolean {
    for (const [slot, tx] of this.open) if (slot !== exceptSlot && tx.keys.has(key)) return true;
    return false;
  }

  private event(key: string, failFirst: boolean) {
    return { type: MODEL_TYPE, key, payload: { failFirst } };
  }

  private async publish(keys: string[], commit: boolean, failFirst: boolean): Promise<void> {
    // It would wait for an open transaction's key lock, and this model runs one step at a time.
    if (keys.some((k) => this.heldByOpen(k))) return;
    let events: BatonEvent[] = [];
    const rollback = new Error('model rollback');
    try {
      await this.env.producerDb.transaction(async (tx) => {
        events = await this.env.producer.publish(
          tx,
          keys.map((k) => this.event(k, failFirst)),
        );
        if (!commit) throw rollback;
      });
      this.committed.push(...events);
    } catch (error) {
      if (error !== rollback) throw error;
      for (const e of events) this.rolledBack.add(e.id);
    }
  }

  private async publishOpen(slot: number, key: string, failFirst: boolean): Promise<void> {
    if (this.heldByOpen(key, slot)) return;
    const client = this.slot(slot);
    let tx = this.open.get(slot);
    if (!tx) {
      await client.query('BEGIN');
      tx = { keys: new Set(), events: [] };
      this.open.set(slot, tx);
    }
    tx.keys.add(key);
    tx.events.push(...(await this.env.producer.publish(client, this.event(key, failFirst))));
  }

  private async close(slot: number, commit: boolean): Promise<void> {
    const tx = this.open.get(slot);
    if (!tx) return;
    await this.slot(slot).query(commit ? 'COMMIT' : 'ROLLBACK');
    this.open.delete(slot);
    if (commit) this.committed.push(...tx.events);
    else for (const e of tx.events) this.rolledBack.add(e.id);
  }

  private slot(slot: number): pg.Client {
    const client = this.env.slots[slot];
    if (!client) throw new Error(`no slot ${slot}`);
    return client;
  }

  /** As the worker loop does: a batch; if a handler fails, one event carefully. */
  private async handle(careful: boolean): Promise<number> {
    if (!careful) {
      try {
        return await this.consumer.handleBatch();
      } catch (error) {
        if (!(error instanceof InjectedHandlerFailure)) throw error;
      }
    }
    return this.consumer.handleOneCarefully();
  }

  /** Runs `step` with a fault armed; the injected crash is expected, any other error is not. */
  private async crashing(fault: Fault, step: () => Promise<unknown>, after = 0): Promise<boolean> {
    fault.arm(after);
    try {
      await step();
      return false;
    } catch (error) {
      if (!(error instanceof SimulatedCrash)) throw error;
      return true;
    } finally {
      fault.disarm();
    }
  }

  /** For faults that every such step reaches: one that never fires would test nothing. */
  private async mustCrash(fault: Fault, step: () => Promise<unknown>): Promise<void> {
    if (!(await this.crashing(fault, step))) {
      throw new Error('the injected crash did not fire: the fault no longer matches the code');
    }
  }

  /** Commits what is open, then relays, fetches and handles until nothing is left to do. */
  async quiesce(): Promise<void> {
    for (const slot of [...this.open.keys()]) await this.close(slot, true);
    for (let i = 0; (await this.relay.runOnce()) > 0; i++) {
      if (i > 200) throw new Error('relay does not drain');
    }
    for (let i = 0; !(await this.caughtUp()); i++) {
      if (i > 200) throw new Error('consumer does not catch up with the feed');
      await this.consumer.fetchOnce(0);
    }
    for (let i = 0; (await this.count("status = 'pending'")) > 0; i++) {
      if (i > 500) throw new Error('inbox does not drain');
      await this.handle(false);
    }
  }

  private async caughtUp(): Promise<boolean> {
    const last = await this.env.producerDb.query<{ last: string }>(
      'SELECT last_seq::text AS last FROM baton.relay_state',
    );
    const cursor = await this.env.consumerDb.query<{ cursor: string | null }>(
      'SELECT cursor FROM baton.subscriptions WHERE name = $1',
      [MODEL_SUBSCRIPTION],
    );
    return (cursor.rows[0]?.cursor ?? '0') === last.rows[0]?.last;
  }

  private async count(where: string): Promise<number> {
    const r = await this.env.consumerDb.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM baton.inbox WHERE ${where}`,
    );
    return r.rows[0]?.n ?? 0;
  }

  /**
   * What must hold after every step: no event took effect twice, nothing
   * rolled back took effect, each key's handling so far is 1, 2, …, k in
   * order, and the feed so far is gap-free and in key order.
   */
  async invariantProblems(): Promise<string[]> {
    const problems: string[] = [];
    const committedIds = new Set(this.committed.map((e) => e.id));
    for (const e of await effects(this.env.consumerDb)) {
      if (e.n !== 1) problems.push(`${e.key} v${e.version} took effect ${e.n} times`);
      if (this.rolledBack.has(e.eventId))
        problems.push(`rolled-back ${e.key} v${e.version} took effect`);
      else if (!committedIds.has(e.eventId))
        problems.push(`uncommitted ${e.key} v${e.version} took effect`);
    }
    problems.push(...perKeyVersionProblems(await handledLog(this.env.consumerDb)));
    const sequenced = (await readOutbox(this.env.producerDb)).filter((r) => r.seq !== null);
    problems.push(...feedProblems(sequenced).map((p) => `feed: ${p}`));
    return problems;
  }

  /** After quiesce: every committed event took effect exactly once, each key handled 1..n in order. */
  async finalProblems(): Promise<string[]> {
    const problems = await this.invariantProblems();
    const done = new Set((await effects(this.env.consumerDb)).map((e) => e.eventId));
    for (const e of this.committed) {
      if (!done.has(e.id)) problems.push(`committed ${e.key} v${e.version} never took effect`);
    }
    const log = await handledLog(this.env.consumerDb);
    if (log.length !== this.committed.length) {
      problems.push(`handled_log has ${log.length} lines for ${this.committed.length} events`);
    }
    const outbox = await readOutbox(this.env.producerDb);
    problems.push(...feedProblems(outbox).map((p) => `outbox: ${p}`));
    if (outbox.length !== this.committed.length) {
      problems.push(`outbox holds ${outbox.length} rows for ${this.committed.length} events`);
    }
    const stuck = await this.count("status <> 'handled'");
    if (stuck > 0) problems.push(`${stuck} inbox entries are not handled`);
    return problems;
  }
}

async function effects(db: Executor) {
  const r = await db.query<{ event_id: string; key: string; version: number; n: number }>(
    'SELECT event_id::text, key, version, n FROM effects',
  );
  return r.rows.map((row) => ({
    eventId: row.event_id,
    key: row.key,
    version: row.version,
    n: row.n,
  }));
}

async function handledLog(db: Executor) {
  const r = await db.query<{ key: string; version: number }>(
    'SELECT key, version FROM handled_log ORDER BY at',
  );
  return r.rows;
}
