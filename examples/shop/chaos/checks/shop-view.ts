import type { HistoryEntry } from '../history.ts';
import { HistoryIndex } from './history-index.ts';
import type { Movement, ReplicaRow, SagaRow, ShopSnapshot } from './snapshot.ts';

export const TERMINAL_SAGA_STATES: ReadonlySet<string> = new Set(['completed', 'compensated']);

/** The snapshot indexed the ways the checks look things up, the history beside it, and the run's stats. */
export class ShopView {
  readonly history: HistoryIndex;
  readonly customers: Map<string, { id: string; name: string; address: string }>;
  readonly tombstones: Map<string, number>;
  readonly sagas: Map<string, SagaRow>;
  readonly orders: Map<string, ShopSnapshot['orders']['orders'][number]>;
  readonly ordersReplica: Map<string, ReplicaRow>;
  readonly loyaltyReplica: Map<string, ReplicaRow>;
  readonly accounts: Map<string, number>;
  readonly movementsByReference: Map<string, Movement[]>;
  readonly stats: Record<string, number> = {};

  constructor(
    readonly snapshot: ShopSnapshot,
    entries: readonly HistoryEntry[],
  ) {
    this.history = new HistoryIndex(entries);
    this.customers = new Map(snapshot.customers.rows.map((r) => [r.id, r]));
    this.tombstones = new Map(snapshot.customers.tombstones.map((t) => [t.id, t.version]));
    this.sagas = new Map(snapshot.orders.sagas.map((s) => [s.id, s]));
    this.orders = new Map(snapshot.orders.orders.map((o) => [o.id, o]));
    this.ordersReplica = new Map(snapshot.orders.replica.map((r) => [r.id, r]));
    this.loyaltyReplica = new Map(snapshot.loyalty.replica.map((r) => [r.id, r]));
    this.accounts = new Map(snapshot.loyalty.accounts.map((a) => [a.customerId, a.balance]));
    this.movementsByReference = groupBy(snapshot.loyalty.movements, (m) => m.reference);
  }

  count(stat: string, by = 1): void {
    this.stats[stat] = (this.stats[stat] ?? 0) + by;
  }

  movements(reference: string): Movement[] {
    return this.movementsByReference.get(reference) ?? [];
  }

  /**
   * Whether loyalty still holds this customer's data: its replica says
   * ACTIVE. Once loyalty has applied a delete, the cascade removed the
   * account, holds and movements, so nothing about the customer's points
   * can be checked any more.
   */
  loyaltyKnows(customerId: string): boolean {
    return this.loyaltyReplica.get(customerId)?.state === 'ACTIVE';
  }
}

export function groupBy<T, K>(items: readonly T[], keyOf: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const list = groups.get(key);
    if (list) list.push(item);
    else groups.set(key, [item]);
  }
  return groups;
}

export function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

export function num(value: unknown): number | undefined {
  return typeof value === 'number' ? value : undefined;
}
