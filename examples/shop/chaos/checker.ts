/**
 * The chaos checker: after a run, with every fault healed, the feeds drained
 * and the caretaker at a fixed point, reads the three shop databases and
 * judges them against the recorded history. Each check is named, counts its
 * anomalies and shows a few concrete examples (see checks/*.ts for the exact
 * rule each one applies). Read-only: it never repairs anything.
 */
import type { CheckResult } from './checks/anomalies.ts';
import { type BadInputReport, badInputContained } from './checks/bad-input.ts';
import { balancesAddUp } from './checks/balances.ts';
import { deadLetterBlocksOnlyItsKey, type FlowProbeResult } from './checks/dead-letter-flow.ts';
import { noDuplicateEffects } from './checks/duplicates.ts';
import { acknowledgedCommandsDurable } from './checks/durability.ts';
import { perKeyEventOrder } from './checks/event-order.ts';
import { DEFAULT_INBOX_RETENTION_MS, noLostEvents } from './checks/lost-events.ts';
import { minimumSuccessfulOperations } from './checks/minimum-ok.ts';
import { noReferenceToMissingCustomer } from './checks/references.ts';
import { replicasNeverMovedBack } from './checks/replica-history.ts';
import { replicasEqualOwners } from './checks/replicas.ts';
import { noReservationLeftInTry } from './checks/reservations.ts';
import { sagasTerminalAndConsistent } from './checks/sagas.ts';
import { ShopView } from './checks/shop-view.ts';
import { readSnapshot, type ShopDatabase } from './checks/snapshot.ts';
import { noUnexpectedEvents } from './checks/unexpected-events.ts';
import type { HistoryEntry, Operation } from './history.ts';

export type { CheckResult } from './checks/anomalies.ts';
export type { BadInputReport } from './checks/bad-input.ts';
export type { FlowObservation, FlowProbeResult } from './checks/dead-letter-flow.ts';
export type { HistoryEntry, Outcome } from './history.ts';

export interface CheckerReport {
  checks: CheckResult[];
  passed: number;
  failed: number;
  stats: Record<string, number>;
}

export interface CheckShopInput {
  databaseUrls: Record<ShopDatabase, string>;
  history: HistoryEntry[];
  /** Successful operations required per type (default: 1 for each type the history has). */
  minimumOk?: Partial<Record<Operation, number>>;
  /** The bad input the harness sent (none: no 5xx to count, no dead letters allowed). */
  badInput?: BadInputReport;
  /** Inbox retention of the subscribers (events relayed longer ago are not compared). */
  inboxRetentionMs?: number;
  /** The checker's "now" (for retention windows). */
  now?: Date;
  /**
   * What the flow probe saw while keys were dead-lettered under load (a
   * scenario with poisoned keys); judged by dead-letter-blocks-only-its-key,
   * which is left out when there is none.
   */
  deadLetterFlow?: FlowProbeResult;
}

/** The names of the checks, in report order. */
export const CHECK_NAMES = [
  'acknowledged-commands-durable',
  'no-lost-events',
  'no-unexpected-events',
  'no-duplicate-effects',
  'sagas-terminal-and-consistent',
  'no-reservation-left-in-try',
  'no-reference-to-missing-customer',
  'balances-add-up',
  'per-key-event-order',
  'replicas-equal-owners',
  'replicas-never-moved-back',
  'bad-input-contained',
  'minimum-successful-operations',
  'dead-letter-blocks-only-its-key', // only with a flow probe (poisoned keys)
] as const;

export async function checkShop(input: CheckShopInput): Promise<CheckerReport> {
  const snapshot = await readSnapshot(input.databaseUrls);
  const view = new ShopView(snapshot, input.history);
  const now = input.now ?? new Date();
  const checks = [
    acknowledgedCommandsDurable(view),
    noLostEvents(view, now, input.inboxRetentionMs ?? DEFAULT_INBOX_RETENTION_MS),
    noUnexpectedEvents(view),
    noDuplicateEffects(view),
    sagasTerminalAndConsistent(view),
    noReservationLeftInTry(view),
    noReferenceToMissingCustomer(view),
    balancesAddUp(view),
    perKeyEventOrder(view),
    replicasEqualOwners(view),
    replicasNeverMovedBack(view),
    badInputContained(view, input.badInput),
    minimumSuccessfulOperations(view, input.minimumOk),
    ...(input.deadLetterFlow ? [deadLetterBlocksOnlyItsKey(input.deadLetterFlow)] : []),
  ];
  Object.assign(view.stats, {
    customers: view.customers.size,
    tombstones: view.tombstones.size,
    orders: view.orders.size,
    sagas: view.sagas.size,
    accounts: view.accounts.size,
    movements: snapshot.loyalty.movements.length,
    'history.entries': input.history.length,
  });
  const failed = checks.filter((c) => !c.passed).length;
  return { checks, passed: checks.length - failed, failed, stats: view.stats };
}

/** The report as lines: each check, its anomaly count and examples when it failed, then `N passed, N failed`. */
export function formatReport(report: CheckerReport): string {
  const lines = report.checks.map((c) =>
    c.passed
      ? `  ✓ ${c.name}`
      : `  ✗ ${c.name}: ${c.anomalies} ${c.anomalies === 1 ? 'anomaly' : 'anomalies'}, e.g. ${JSON.stringify(c.examples)}`,
  );
  lines.push(`${report.passed} passed, ${report.failed} failed`);
  return lines.join('\n');
}
