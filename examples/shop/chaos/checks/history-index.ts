import type { HistoryEntry, Operation } from '../history.ts';

/**
 * The history grouped by the id each command is about (customer id for
 * register / delete / update, order id for place / cancel), with the
 * questions the checks ask about ordering on one id.
 */
export class HistoryIndex {
  private readonly byOpAndId = new Map<string, HistoryEntry[]>();

  constructor(readonly entries: readonly HistoryEntry[]) {
    for (const entry of entries) {
      const id = subjectOf(entry);
      if (id === undefined) continue;
      const key = `${entry.op}\u0000${id}`;
      const list = this.byOpAndId.get(key) ?? [];
      list.push(entry);
      this.byOpAndId.set(key, list);
    }
  }

  /** Commands of one operation on one id. */
  of(op: Operation, id: string): readonly HistoryEntry[] {
    return this.byOpAndId.get(`${op}\u0000${id}`) ?? [];
  }

  /** Commands that may have taken effect (ok or unknown). */
  mayHaveHappened(op: Operation, id: string): HistoryEntry[] {
    return this.of(op, id).filter((e) => e.outcome !== 'fail');
  }

  /** A command of `op` on `id` that may have taken effect after `entry` began (overlapping counts). */
  mayHaveFollowed(op: Operation, id: string, entry: HistoryEntry): boolean {
    return this.mayHaveHappened(op, id).some(
      (other) => other !== entry && other.endedAt >= entry.startedAt,
    );
  }

  /**
   * A customer that may have been deleted and registered again: the checks
   * that follow one customer's points across time (the ledger model, spends
   * of completed sagas) cannot tell its two lives apart, and skip it.
   */
  mayBeReincarnated(customerId: string): boolean {
    return this.mayHaveHappened('delete', customerId).some((d) =>
      this.mayHaveHappened('register', customerId).some((r) => r.endedAt >= d.startedAt),
    );
  }
}

/** The id a command is about; undefined when its args carry none (bad input). */
export function subjectOf(entry: HistoryEntry): string | undefined {
  const value = entry.op === 'cancel' ? entry.args.orderId : entry.args.id;
  return typeof value === 'string' ? value : undefined;
}

/** A string argument, or undefined. */
export function argText(entry: HistoryEntry, field: string): string | undefined {
  const value = entry.args[field];
  return typeof value === 'string' ? value : undefined;
}

export function argNumber(entry: HistoryEntry, field: string): number | undefined {
  const value = entry.args[field];
  return typeof value === 'number' ? value : undefined;
}
