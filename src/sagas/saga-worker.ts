import { randomUUID } from 'node:crypto';
import type { Executor } from '../db/executor.ts';
import { type Logger, silentLogger } from '../logger.ts';
import type { EventInput } from '../messaging/event.ts';
import { WakeSignal } from '../messaging/wake-signal.ts';
import type { SagaDefinition } from './saga-definition.ts';
import { runSaga } from './saga-run.ts';
import type { SagaStore } from './saga-store.ts';

export interface SagaWorkerOptions {
  /** Sagas run at the same time by this worker. Default 4. */
  concurrency?: number;
  /** Lease length; renewed every third of it while a saga runs. Default 30 s. */
  leaseMs?: number;
  /** How often an idle worker looks for due sagas. Default 250 ms. */
  pollIntervalMs?: number;
  /** Name in leases and logs. Default a random id. */
  id?: string;
}

/**
 * Runs sagas of the definitions it knows. Any number of workers, in any
 * processes of the service, share the work: a saga is leased with a fencing
 * token; a crashed or paused worker's lease expires and another worker takes
 * the saga over, after which the old worker's writes are refused.
 */
export class SagaWorker {
  readonly id: string;
  private readonly signals: WakeSignal[] = [];
  /** Loops waiting for work, the longest-waiting first. */
  private readonly idle: WakeSignal[] = [];
  private loops: Promise<void>[] = [];
  private stopping = false;
  private readonly o: Required<SagaWorkerOptions>;

  constructor(
    private readonly store: SagaStore,
    private readonly definitions: ReadonlyMap<string, SagaDefinition>,
    private readonly publish: (tx: Executor, event: EventInput) => Promise<unknown>,
    options: SagaWorkerOptions = {},
    private readonly logger: Logger = silentLogger,
  ) {
    this.o = {
      concurrency: 4,
      leaseMs: 30_000,
      pollIntervalMs: 250,
      id: `worker-${randomUUID().slice(0, 8)}`,
      ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
    } as Required<SagaWorkerOptions>;
    this.id = this.o.id;
  }

  start(): void {
    if (this.loops.length > 0) return;
    this.stopping = false;
    for (let i = 0; i < this.o.concurrency; i++) {
      const signal = new WakeSignal();
      this.signals.push(signal);
      this.loops.push(this.loop(signal));
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const s of this.signals) s.wake();
    await Promise.all(this.loops);
    this.loops = [];
    this.signals.length = 0;
    this.idle.length = 0;
  }

  /** Every loop looks for work now. */
  wake(): void {
    for (const s of this.signals) s.wake();
  }

  /**
   * One idle loop looks for work now (after a local start: one new saga needs
   * one loop; waking all would send the others to claim nothing). False when
   * every loop is busy — each claims again when it finishes, so nothing waits.
   */
  wakeOne(): boolean {
    const signal = this.idle.shift();
    signal?.wake();
    return signal !== undefined;
  }

  private async loop(signal: WakeSignal): Promise<void> {
    while (!this.stopping) {
      let worked = false;
      try {
        worked = await this.runOne();
      } catch (error) {
        this.logger.error(
          { err: error, worker: this.id },
          'baton saga worker: run failed; the lease will expire and the saga is retried',
        );
      }
      if (!worked && !this.stopping) {
        this.idle.push(signal);
        await signal.wait(this.o.pollIntervalMs);
        const at = this.idle.indexOf(signal);
        if (at >= 0) this.idle.splice(at, 1);
      }
    }
  }

  /** Claims and runs one due saga; false when none was due. */
  async runOne(): Promise<boolean> {
    const saga = await this.store.claim(this.id, this.o.leaseMs, [...this.definitions.keys()]);
    if (!saga) return false;
    const definition = this.definitions.get(saga.name);
    if (!definition) return true;
    const heartbeat = setInterval(
      () => {
        this.store.renew(saga.id, saga.fence, this.o.leaseMs).catch(() => {});
      },
      Math.max(50, Math.floor(this.o.leaseMs / 3)),
    );
    try {
      await runSaga(definition, saga, {
        store: this.store,
        publish: this.publish,
        logger: this.logger,
      });
    } finally {
      clearInterval(heartbeat);
    }
    return true;
  }
}
