/**
 * A loop's sleep that can be cut short: `wait(ms)` resolves after `ms` or on
 * the next `wake()`, whichever comes first. A wake that arrives while nobody
 * waits is remembered, so the next wait returns at once (no lost wake-ups).
 */
export class WakeSignal {
  private pending = false;
  private resolve: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  wake(): void {
    if (this.resolve) this.fire();
    else this.pending = true;
  }

  wait(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.timer = setTimeout(() => this.fire(), ms);
    });
  }

  private fire(): void {
    const resolve = this.resolve;
    this.resolve = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    resolve?.();
  }
}
