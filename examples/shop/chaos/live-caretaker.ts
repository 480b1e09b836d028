import type { RunningShop } from '../launcher.ts';
import { request } from '../shop-client.ts';
import { REFERRERS, type Referrer } from './replica-audit.ts';
import type { Schedule } from './schedule.ts';
import type { SeededRandom } from './seeded-random.ts';

/** What the caretaker did while the workload ran, over all its runs. */
export interface LiveCaretakerSummary {
  runs: number;
  /** Runs that answered with a report (neither skipped nor failed). */
  completed: number;
  failed: number;
  repaired: number;
  differences: number;
  /** Differences by class, summed over the runs. */
  byClass: Record<string, number>;
}

export interface LiveCaretaker {
  /** Ends the loops after their current run. */
  stop(): Promise<void>;
  summary(): LiveCaretakerSummary;
}

interface ReconcileAnswer {
  skipped?: boolean;
  ms?: number;
  totals?: { differences: number; repaired: number; byClass: Record<string, number> };
  entities?: { cut?: { caughtUp?: boolean }; error?: string }[];
}

/**
 * The caretaker repairing during traffic and faults, not only at
 * quiescence: at each referrer, on a seeded schedule, `POST /admin/reconcile
 * { repair: true, approve: true }` while the workload runs and the nemesis
 * injects faults (tampering gives it something to repair). Its repairs race
 * the events in flight — what the "never moved back" check watches. Each run
 * goes into the schedule (kind `caretaker`) with what it found and repaired.
 */
export function startLiveCaretaker(
  shop: RunningShop,
  everyMs: [number, number],
  random: SeededRandom,
  schedule: Schedule,
): LiveCaretaker {
  let stopping = false;
  /** Wakes the loops' pauses on stop. */
  const sleeping = new Set<() => void>();
  const summary: LiveCaretakerSummary = {
    runs: 0,
    completed: 0,
    failed: 0,
    repaired: 0,
    differences: 0,
    byClass: {},
  };
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        sleeping.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      sleeping.add(done);
    });

  const runOnce = async (referrer: Referrer) => {
    summary.runs++;
    try {
      const r = await request<ReconcileAnswer>(
        shop.urls[referrer],
        'POST',
        '/admin/reconcile',
        { repair: true, approve: true },
        { authorization: `Bearer ${shop.adminToken}` },
        60_000,
      );
      schedule.record('caretaker', referrer, describe(r.status, r.body, summary), 'repair');
    } catch (error) {
      summary.failed++;
      schedule.record('caretaker', referrer, `no answer: ${(error as Error).message}`, 'repair');
    }
  };

  // One loop per referrer, each on its own seeded stream (one's timing does not shift the other's).
  const loops = REFERRERS.map(async (referrer) => {
    const own = random.fork(referrer);
    while (!stopping) {
      await pause(own.int(...everyMs));
      if (!stopping) await runOnce(referrer);
    }
  });

  return {
    async stop() {
      stopping = true;
      for (const done of [...sleeping]) done();
      await Promise.all(loops);
    },
    summary: () => summary,
  };
}

function describe(status: number, body: ReconcileAnswer, summary: LiveCaretakerSummary): string {
  if (body.skipped) return 'skipped: another run of this service in progress';
  if (status !== 200 || !body.totals) {
    summary.failed++;
    return `HTTP ${status}: ${JSON.stringify(body).slice(0, 200)}`;
  }
  summary.completed++;
  summary.repaired += body.totals.repaired;
  summary.differences += body.totals.differences;
  const classes = Object.entries(body.totals.byClass).filter(([, n]) => n > 0);
  for (const [cls, n] of classes) summary.byClass[cls] = (summary.byClass[cls] ?? 0) + n;
  const entities = body.entities ?? [];
  const caughtUp = entities.every((e) => e.cut?.caughtUp !== false);
  // An entity check that failed (e.g. the owner did not answer through a network fault) found nothing.
  const errors = entities.filter((e) => e.error).map((e) => `; entity check failed: ${e.error}`);
  return `${body.totals.differences} differences (${classes.map(([c, n]) => `${c} ${n}`).join(', ') || 'none'}), ${body.totals.repaired} repaired, cut ${caughtUp ? 'caught up' : 'not caught up'}, ${body.ms ?? '?'} ms${errors.join('')}`;
}
