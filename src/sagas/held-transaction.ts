import type { Executor } from '../db/executor.ts';

/**
 * A transaction whose work is done but which is not committed yet: what
 * comes next may ride on its commit.
 */
export interface HeldTransaction {
  /**
   * Commits it, after `then` when given; answers whether `then` ran in it
   * (false: it had committed alone already — do that work on its own).
   * Rejects with the commit's error.
   */
  release(then?: (tx: Executor) => Promise<void>): Promise<boolean>;
}

/**
 * Runs `work` in a transaction and answers its result at once, holding the
 * transaction open until `release`. Why: a saga's last local step and the
 * saga's completion are then one commit — the run learns that a step was
 * the last only when the saga function returns, after the step's result was
 * handed to it. If nothing releases it within this turn of the event loop
 * (the function awaits something else), it commits alone, so a transaction
 * is never held across I/O of the caller's and its locks stay short.
 *
 * Handing a result out before its commit is safe for a saga's step: the run
 * commits (`release`) before any other write of the run, and a commit that
 * fails interrupts the run, which is then replayed from the records — where
 * this step has none, and runs again.
 */
export function runHeld<T>(
  transaction: (fn: (tx: Executor) => Promise<void>) => Promise<void>,
  work: (tx: Executor) => Promise<T>,
): Promise<{ result: T; held: HeldTransaction }> {
  return new Promise((resolve, reject) => {
    let worked = false;
    const committed: Promise<void> = transaction(async (tx) => {
      const result = await work(tx);
      worked = true;
      let decide: (then: ((tx: Executor) => Promise<void>) | undefined) => void = () => {};
      const decision = new Promise<((tx: Executor) => Promise<void>) | undefined>((r) => {
        decide = r;
      });
      let rode: boolean | undefined;
      resolve({
        result,
        held: {
          release: (then) => {
            rode ??= then !== undefined;
            decide(then);
            return committed.then(() => rode === true);
          },
        },
      });
      setImmediate(() => {
        rode ??= false;
        decide(undefined);
      });
      const then = await decision;
      if (then) await then(tx);
    });
    // Before the work is done, a failure is the caller's answer; after it, `release` reports it.
    committed.catch((error) => {
      if (!worked) reject(error);
    });
  });
}
