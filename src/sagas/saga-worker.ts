import { randomUUID } from 'node:crypto';
import { InvalidInputError } from '../core/errors.ts';
import type { EventInput } from '../core/event.ts';
import { type Logger, silentLogger } from '../core/logger.ts';
import { check, withDefaults } from '../core/options.ts';
import { WakeSignal } from '../core/wake-signal.ts';
import type { Executor } from '../db/executor.ts';
import type { SagaDefinition } from './saga-definition.ts';
import { runSaga } from './saga-run.ts';
import type { SagaRow, SagaStore } from './saga-store.ts';

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

/** A saga worker's options, defaults applied key by key, checked, frozen. */
export function compileSagaWorkerOptions(
  options: SagaWorkerOptions,
): Readonly<Required<SagaWorkerOptions>> {
  const o = withDefaults<Required<SagaWorkerOptions>>(options, {
    concurrency: 4,
    leaseMs: 30_000,
    pollIntervalMs: 250,
    id: `worker-${randomUUID().slice(0, 8)}`,
  });
  check.integer('saga worker', 'concurrency', o.concurrency, 1, 1_000);
  check.ms('saga worker', 'leaseMs', o.leaseMs, 1);
  check.ms('saga worker', 'pollIntervalMs', o.pollIntervalMs);
  if (typeof o.id !== 'string' || o.id.length === 0 || o.id.length > 200)
    throw new InvalidInputError(
      `saga worker: id must be 1–200 characters (got ${JSON.stringify(o.id)}).`,
    );
  return Object.freeze(o);
}

/** A loop waiting for work; `handed` is set when `reserveLoop` promised it a saga. */
interface IdleLoop {
  signal: WakeSignal;
  handed?: Promise<SagaRow | undefined>;
}

/** Gives a reserved loop the saga it was promised (leased to this worker), or nothing to run. */
export type HandOff = (saga: SagaRow | undefined) => void;

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
  private readonly idle: IdleLoop[] = [];
  private loops: Promise<void>[] = [];
  private stopping = false;
  private readonly o: Readonly<Required<SagaWorkerOptions>>;
  /**
   * Bumped whenever a saga may be waiting to be claimed (a start that could
   * not be handed to a loop, a wake-up, a claim that found one). A loop that
   * finishes a saga handed to it claims again only if this moved since the
   * last claim came back empty — otherwise every hand-off would be followed by
   * a claim that finds nothing (one statement per saga). Timers, replies and
   * other processes' sagas are found by the idle loops' polls.
   */
  private maybeDue = 1;
  private emptyAt = 0;

  constructor(
    private readonly store: SagaStore,
    private readonly definitions: ReadonlyMap<string, SagaDefinition>,
    private readonly publish: (tx: Executor, event: EventInput) => Promise<unknown>,
    options: SagaWorkerOptions = {},
    private readonly logger: Logger = silentLogger,
  ) {
    this.o = compileSagaWorkerOptions(options);
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
    this.maybeDue++;
    for (const s of this.signals) s.wake();
  }

  /**
   * One idle loop looks for work now (after a local start: one new saga needs
   * one loop; waking all would send the others to claim nothing). False when
   * every loop is busy — each claims again when it finishes, so nothing waits.
   */
  wakeOne(): boolean {
    this.maybeDue++;
    const loop = this.idle.shift();
    loop?.signal.wake();
    return loop !== undefined;
  }

  /** The lease a saga started here gets when it is handed straight to a loop of this worker. */
  get lease(): { owner: string; leaseMs: number } {
    return { owner: this.id, leaseMs: this.o.leaseMs };
  }

  /**
   * Takes an idle loop for a saga about to be started here, so the start can
   * lease the saga to this worker in its own INSERT and the loop runs it
   * without claiming it (one statement and one commit fewer per saga). The
   * caller must call the returned hand-off exactly once: with the leased saga,
   * or with nothing (then the loop just looks for work). Undefined when no
   * loop is idle.
   */
  reserveLoop(): HandOff | undefined {
    if (this.stopping) return undefined;
    const loop = this.idle.shift();
    if (!loop) return undefined;
    let handOff: HandOff = () => {};
    loop.handed = new Promise((resolve) => {
      handOff = resolve;
    });
    loop.signal.wake();
    return handOff;
  }

  private async loop(signal: WakeSignal): Promise<void> {
    let handed: SagaRow | undefined;
    while (!this.stopping) {
      let worked = false;
      try {
        if (handed) {
          await this.runLeased(handed);
          worked = this.maybeDue !== this.emptyAt;
        } else {
          worked = await this.runOne();
        }
      } catch (error) {
        this.logger.error(
          { err: error, worker: this.id },
          'baton saga worker: run failed; the lease will expire and the saga is retried',
        );
      }
      handed = undefined;
      if (!worked && !this.stopping) handed = await this.waitIdle(signal);
    }
  }

  /** Waits for work as an idle loop; resolves with a saga if one was handed to this loop. */
  private async waitIdle(signal: WakeSignal): Promise<SagaRow | undefined> {
    const loop: IdleLoop = { signal };
    this.idle.push(loop);
    await signal.wait(this.o.pollIntervalMs);
    // Synchronously after waking: either a reservation already took this loop
    // out of the list (then `handed` is set), or it is still listed and now leaves.
    const at = this.idle.indexOf(loop);
    if (at >= 0) this.idle.splice(at, 1);
    return loop.handed;
  }

  /** Claims and runs one due saga; false when none was due. */
  async runOne(): Promise<boolean> {
    const asOf = this.maybeDue;
    const saga = await this.store.claim(this.id, this.o.leaseMs, [...this.definitions.keys()]);
    if (!saga) {
      // Nothing was due as of this claim (unless a hint arrived while it ran).
      this.emptyAt = asOf;
      return false;
    }
    this.maybeDue++;
    return this.runLeased(saga);
  }

  /** Runs a saga whose lease this worker holds (claimed, or leased at start). */
  private async runLeased(saga: SagaRow): Promise<boolean> {
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
