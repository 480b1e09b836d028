/** A named check's result: passed when no anomaly was found; up to a few concrete examples. */
export interface CheckResult {
  name: string;
  passed: boolean;
  anomalies: number;
  examples: unknown[];
}

const MAX_EXAMPLES = 5;

/** Collects the anomalies one check finds; `kind` says which rule each broke. */
export class Anomalies {
  private count = 0;
  private readonly examples: unknown[] = [];

  constructor(readonly name: string) {}

  add(kind: string, detail: Record<string, unknown>): void {
    this.count++;
    if (this.examples.length < MAX_EXAMPLES) this.examples.push({ kind, ...detail });
  }

  result(): CheckResult {
    return {
      name: this.name,
      passed: this.count === 0,
      anomalies: this.count,
      examples: this.examples,
    };
  }
}
