import type { FaultKind } from './scenarios.ts';

/**
 * What went into a run's schedule: the nemesis's faults, the poison (a
 * constraint that dead-letters some keys: a fault too), and the steps of the
 * harness's live activities, which are not faults — the caretaker's runs
 * (`caretaker`) and the poison's progress (`poison-step`: registered,
 * dead-lettered, backlog, flow probe, healed).
 */
export type ScheduleKind = FaultKind | 'poison' | 'caretaker' | 'poison-step';

const NOT_FAULTS: ReadonlySet<ScheduleKind> = new Set(['caretaker', 'poison-step']);

/** One entry of the run's schedule (schedule.jsonl). */
export interface ScheduledFault {
  /** ms since the schedule started. */
  at: number;
  kind: ScheduleKind;
  /** Which variant of the kind, where it has several (e.g. tamper: `owner-delete`). */
  variant?: string;
  target: string;
  detail: string;
}

/** The run's schedule: every fault, tamper and live activity, in the order it happened. */
export class Schedule {
  readonly entries: ScheduledFault[] = [];
  private readonly started = Date.now();

  constructor(private readonly log: (line: string) => void) {}

  record(kind: ScheduleKind, target: string, detail: string, variant?: string): void {
    this.entries.push({
      at: Date.now() - this.started,
      kind,
      ...(variant ? { variant } : {}),
      target,
      detail,
    });
    this.log(`schedule ${kind}${variant ? `:${variant}` : ''} ${target} ${detail}`);
  }

  /** The faults counted by kind (and variant), e.g. `{ kill: 3, 'tamper:owner-delete': 2 }`. */
  faultsByKind(): Record<string, number> {
    const byKind: Record<string, number> = {};
    for (const f of this.entries.filter((e) => !NOT_FAULTS.has(e.kind))) {
      const name = f.variant ? `${f.kind}:${f.variant}` : f.kind;
      byKind[name] = (byKind[name] ?? 0) + 1;
    }
    return byKind;
  }
}
