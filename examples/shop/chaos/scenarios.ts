import type { FaultSettings } from './fault-proxy.ts';

/** What a scenario does to the shop while the workload runs. */
export type FaultKind =
  | 'kill'
  | 'pause'
  | 'database-restart'
  | 'network'
  | 'out-of-order'
  | 'clock';

export interface Scenario {
  name: string;
  /** Commands the workload issues. */
  operations: number;
  concurrency: number;
  faults: readonly FaultKind[];
  /** Time between two process/database faults. */
  faultEveryMs: [number, number];
  /** Network fault settings drawn from (per link, per rotation). */
  network?: FaultSettings;
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

/** The fixed CI set: every fault kind alone, then all together. */
export const CI_SCENARIOS: readonly Scenario[] = [
  { name: 'baseline', operations: 300, concurrency: 6, faults: [], faultEveryMs: [1_000, 1_000] },
  {
    name: 'crash',
    operations: 300,
    concurrency: 6,
    faults: ['kill'],
    faultEveryMs: [2_500, 5_000],
  },
  {
    name: 'pause',
    operations: 300,
    concurrency: 6,
    faults: ['pause'],
    faultEveryMs: [2_500, 5_000],
  },
  {
    name: 'database-restart',
    operations: 300,
    concurrency: 6,
    faults: ['database-restart'],
    faultEveryMs: [7_000, 10_000],
  },
  {
    name: 'network',
    operations: 400,
    concurrency: 8,
    faults: ['network'],
    faultEveryMs: [1_500, 3_000],
    network: NETWORK,
  },
  {
    name: 'out-of-order',
    operations: 300,
    concurrency: 6,
    faults: ['out-of-order'],
    faultEveryMs: [200, 600],
  },
  {
    name: 'mixed',
    operations: 400,
    concurrency: 8,
    faults: ['kill', 'pause', 'database-restart', 'network', 'out-of-order', 'clock'],
    faultEveryMs: [2_000, 4_000],
    network: NETWORK,
  },
];

export function scenarioByName(name: string): Scenario | undefined {
  return CI_SCENARIOS.find((s) => s.name === name);
}
