import type { Database } from '../db/executor.ts';

/**
 * Tells the callers of `sagas.waitFor` that their saga settled, so they
 * re-read it instead of polling: one LISTEN per `Sagas` on the channel the
 * `saga_settled` trigger notifies (payload: the saga's id), fanned out to the
 * waiters of that id. The NOTIFY is a hint — the saga's row stays the truth,
 * and a waiter still re-reads it now and then in case a notification was lost
 * (a listener reconnecting, a settle written with triggers off).
 */
export class SettledSignal {
  private readonly waiting = new Map<string, Set<() => void>>();
  private listening: Promise<boolean> | undefined;

  constructor(
    private readonly db: Database,
    private readonly channel: string,
  ) {}

  /**
   * Calls `wake` whenever saga `id` is announced settled, until `stop()`.
   * Resolves once the LISTEN is in place — `told: false` when it could not
   * be, and the caller has to poll.
   */
  async watch(id: string, wake: () => void): Promise<{ told: boolean; stop: () => void }> {
    const wakes = this.waiting.get(id) ?? new Set<() => void>();
    this.waiting.set(id, wakes);
    wakes.add(wake);
    const stop = () => {
      wakes.delete(wake);
      if (wakes.size === 0 && this.waiting.get(id) === wakes) this.waiting.delete(id);
    };
    return { told: await this.listen(), stop };
  }

  private listen(): Promise<boolean> {
    this.listening ??= this.db
      .listen(this.channel, (id) => {
        for (const wake of this.waiting.get(id) ?? []) wake();
      })
      .then(
        () => true,
        () => {
          this.listening = undefined; // the next waiter tries again
          return false;
        },
      );
    return this.listening;
  }
}
