import type { ShopOptions } from '../launcher.ts';
import type { FaultSettings } from './fault-proxy.ts';
import type { PoisonSettings } from './poison.ts';

/** What a scenario does to the shop while the workload runs. */
export type FaultKind =
  | 'kill'
  | 'pause'
  | 'database-restart'
  | 'network'
  | 'out-of-order'
  | 'clock'
  | 'tamper'
  | 'nats';

export interface Scenario {
  name: string;
  /** How long the workload runs (the nemesis with it). */
  durationMs: number;
  /** At most this many commands. */
  operations: number;
  concurrency: number;
  faults: readonly FaultKind[];
  /** Time between two process/database faults. */
  faultEveryMs: [number, number];
  /** Network fault settings drawn from (per link, per rotation). */
  network?: FaultSettings;
  /** Run the caretaker (repair, approve) at each referrer every [min, max] ms while the workload runs. */
  liveCaretakerEveryMs?: [number, number];
  /** Dead-letter a few keys at loyalty under load and probe that every other key flows (poison.ts). */
  poison?: PoisonSettings;
  /** Consumer settings per service (e.g. loyalty's backlog limit, for the poison). */
  consumers?: ShopOptions['consumers'];
  /** Events between the services over this (default the HTTP feed; `--transport` overrides it). */
  transport?: 'http' | 'nats';
}

const NETWORK: FaultSettings = {
  delayMs: [5, 120],
  delayChance: 0.25,
  reset: 0.04,
  dropResponse: 0.04,
  duplicate: 0.05,
  lateReplay: 0.03,
  replayDelayMs: [200, 1_500],
  reorder: 0.05,
  reorderWaitMs: 150,
};

/** The fixed CI set: every fault kind alone (the caretaker's and dead letters' together), then all together. */
export const CI_SCENARIOS: readonly Scenario[] = [
  {
    name: 'baseline',
    durationMs: 30_000,
    operations: 10_000,
    concurrency: 6,
    faults: [],
    faultEveryMs: [1_000, 1_000],
  },
  {
    name: 'crash',
    durationMs: 60_000,
    operations: 10_000,
    concurrency: 6,
    faults: ['kill'],
    faultEveryMs: [3_000, 6_000],
  },
  {
    name: 'pause',
    durationMs: 60_000,
    operations: 10_000,
    concurrency: 6,
    faults: ['pause'],
    faultEveryMs: [3_000, 6_000],
  },
  {
    name: 'database-restart',
    durationMs: 60_000,
    operations: 10_000,
    concurrency: 6,
    faults: ['database-restart'],
    faultEveryMs: [9_000, 14_000],
  },
  {
    name: 'network',
    durationMs: 60_000,
    operations: 10_000,
    concurrency: 8,
    faults: ['network'],
    faultEveryMs: [300, 900],
    network: NETWORK,
  },
  {
    name: 'out-of-order',
    durationMs: 45_000,
    operations: 10_000,
    concurrency: 6,
    faults: ['out-of-order'],
    faultEveryMs: [100, 300],
  },
  {
    // The caretaker repairing while events flow (tampering gives it work, network faults answer
    // its lookups late), and a few keys dead-lettered at loyalty with their backlog past the
    // consumer's limit while every other key must keep flowing.
    name: 'caretaker-under-load',
    durationMs: 45_000,
    operations: 10_000,
    concurrency: 6,
    faults: ['tamper', 'tamper', 'network'],
    faultEveryMs: [300, 900],
    network: NETWORK,
    liveCaretakerEveryMs: [1_500, 4_000],
    poison: { keys: 3, updatesPerKey: 25, flowBoundMs: 15_000, setupBoundMs: 25_000 },
    // A small backlog limit (25 × 3 updates pile up behind the dead letters), and few
    // attempts so that the poisoned keys are dead letters within seconds.
    consumers: { loyalty: { maxPendingEntries: 50, maxAttempts: 8 } },
  },
  {
    // Events over a 3-node JetStream cluster: nodes killed and restarted, paused, the whole
    // cluster restarted, messages deleted from a stream behind Baton's back (repaired from the
    // outbox), and service processes killed as well.
    name: 'nats',
    durationMs: 60_000,
    operations: 10_000,
    concurrency: 6,
    transport: 'nats',
    faults: ['nats', 'nats', 'nats', 'kill'],
    faultEveryMs: [2_000, 5_000],
    // The caretaker's cut reads NATS cursors (<stream seq>@<feed position>): run it live.
    liveCaretakerEveryMs: [3_000, 6_000],
  },
  {
    name: 'mixed',
    durationMs: 75_000,
    operations: 12_000,
    concurrency: 8,
    faults: [
      'kill',
      'pause',
      'database-restart',
      'network',
      'network',
      'out-of-order',
      'out-of-order',
      'clock',
      'tamper',
    ],
    faultEveryMs: [800, 2_000],
    network: NETWORK,
    liveCaretakerEveryMs: [2_000, 5_000],
  },
];

export function scenarioByName(name: string): Scenario | undefined {
  return CI_SCENARIOS.find((s) => s.name === name);
}
