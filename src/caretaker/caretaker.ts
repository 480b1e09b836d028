import type { EventInput } from '../core/event.ts';
import type { Logger } from '../core/logger.ts';
import { inSpan } from '../core/tracing.ts';
import type { Database, Executor } from '../db/executor.ts';
import type { EntityReplication } from '../references/entity-replication.ts';
import { type MissingObject, readMissingObjects } from '../references/installed-objects.ts';
import type { OwnerClient } from '../references/owner-client.ts';
import { CaretakerLease } from './caretaker-lease.ts';
import { DIFFERENCE_CLASSES, type DifferenceClass } from './classify.ts';
import { EntityReconciler, type EntityReport, emptyEntityReport } from './entity-reconciler.ts';
import {
  checkIntegrity,
  type FeedReport,
  type IntegrityReport,
  type OwnedEntity,
} from './integrity.ts';
import { type InvariantDefinition, type InvariantReport, runInvariant } from './invariants.ts';
import { checkReferencingRows, type ReferencingRowsReport } from './referencing-rows.ts';

/** One replicated entity the caretaker compares with its owner. */
export interface ReconcileTarget {
  replication: EntityReplication;
  owner: OwnerClient;
  /** The subscription that carries the owner's state events. */
  subscription: string;
}

export interface CaretakerRunOptions {
  /** Apply repairs. Default false: report only (dry run). */
  repair?: boolean;
  /** Repair suspected true orphans now instead of after a second confirmation. */
  approve?: boolean;
  /**
   * With `repair`: rows of this service's own tables changed outside Baton
   * whose original cannot be restored are taken as they are and sealed again
   * (an operator has looked at them); otherwise they are reported on every run.
   */
  acceptAltered?: boolean;
  /** Only this entity (and no invariants). */
  entity?: string;
  cutTimeoutMs?: number;
  examples?: number;
  /** Progress lines, e.g. for a terminal. */
  onProgress?: (step: { done: number; total: number; what: string }) => void;
}

export interface CaretakerReport {
  startedAt: string;
  ms: number;
  repair: boolean;
  /** Another caretaker of this service was running: nothing was checked. */
  skipped: boolean;
  entities: (EntityReport & { referencingRows: ReferencingRowsReport[] })[];
  invariants: InvariantReport[];
  /** This service's own tables against their seals, and its feed's positions (not with `entity`). */
  integrity: { tables: IntegrityReport[]; feed: FeedReport } | null;
  /**
   * Baton's foreign keys and triggers in this service's tables found missing
   * or disabled (a schema tool dropped them?), and how many a repairing run
   * restored by re-running `install()` (not with `entity`).
   */
  installation: { missing: MissingObject[]; restored: number } | null;
  totals: {
    differences: number;
    byClass: Record<DifferenceClass, number>;
    repaired: number;
    quarantined: number;
    bytesExchanged: number;
    invariantViolations: number;
    referencingRowProblems: number;
    /** Rows changed outside Baton, and positions of the feed whose events are gone. */
    integrityProblems: number;
    /** Baton's keys and triggers still missing or disabled after the run. */
    missingObjects: number;
  };
}

/** What a caretaker works on: one service's database and declarations. */
export interface CaretakerOptions {
  db: Database;
  schemaSql: string;
  /** The replicated entities to compare with their owners. */
  targets: () => readonly ReconcileTarget[];
  invariants: () => readonly InvariantDefinition[];
  /** The entities this service owns (their versions tables are checked too). */
  owned: () => readonly OwnedEntity[];
  publish: (tx: Executor, events: EventInput[]) => Promise<unknown>;
  /**
   * Restores Baton's keys and triggers in the service's tables (the
   * declarations' `install()`); a repairing run calls it when some are
   * missing. Absent (a caretaker outside the service): reported only.
   */
  reinstall?: () => Promise<void>;
  logger?: Logger;
  /**
   * The run's lease (one caretaker per service at a time), renewed while it
   * runs; a run whose process died is taken over once it runs out. Default 30 s.
   */
  leaseMs?: number;
}

/**
 * Finds every remaining inconsistency of this service's references and
 * invariants, reports it, and repairs it by the declared policy. One run at
 * a time per service (an advisory lock; a second one is skipped). Each
 * report is stored in `reconcile_runs` for `baton status`.
 */
export class Caretaker {
  private readonly db: Database;
  private readonly schemaSql: string;
  private readonly logger: Logger | undefined;

  constructor(private readonly o: CaretakerOptions) {
    this.db = o.db;
    this.schemaSql = o.schemaSql;
    this.logger = o.logger;
  }

  run(options: CaretakerRunOptions = {}): Promise<CaretakerReport> {
    return inSpan(
      'caretaker run',
      { attributes: { 'baton.caretaker.repair': options.repair ?? false } },
      async (span) => {
        const report = await this.runNow(options);
        span.setAttribute('baton.caretaker.differences', report.totals.differences);
        return report;
      },
    );
  }

  private async runNow(options: CaretakerRunOptions = {}): Promise<CaretakerReport> {
    const started = Date.now();
    const repair = options.repair ?? false;
    const examples = options.examples ?? 5;
    const report: CaretakerReport = {
      startedAt: new Date(started).toISOString(),
      ms: 0,
      repair,
      skipped: false,
      entities: [],
      invariants: [],
      integrity: null,
      installation: null,
      totals: {
        differences: 0,
        byClass: Object.fromEntries(DIFFERENCE_CLASSES.map((c) => [c, 0])) as Record<
          DifferenceClass,
          number
        >,
        repaired: 0,
        quarantined: 0,
        bytesExchanged: 0,
        invariantViolations: 0,
        referencingRowProblems: 0,
        integrityProblems: 0,
        missingObjects: 0,
      },
    };
    const lease = await CaretakerLease.take(this.db, this.schemaSql, this.o.leaseMs ?? 30_000);
    if (!lease) {
      report.skipped = true;
      return report;
    }
    try {
      await this.runAll(report, options, repair, examples);
    } finally {
      await lease.release();
    }
    summarise(report);
    report.ms = Date.now() - started;
    await this.db.query(
      `INSERT INTO ${this.schemaSql}.reconcile_runs (started_at, repair, report) VALUES ($1, $2, $3)`,
      [report.startedAt, repair, JSON.stringify(report)],
    );
    return report;
  }

  private async runAll(
    report: CaretakerReport,
    options: CaretakerRunOptions,
    repair: boolean,
    examples: number,
  ): Promise<void> {
    const targets = this.o
      .targets()
      .filter((t) => !options.entity || t.replication.replica.entity === options.entity);
    const invariants = options.entity ? [] : this.o.invariants();
    const integrity = options.entity === undefined;
    const total = targets.length + invariants.length + (integrity ? 2 : 0);
    let done = 0;
    if (integrity) {
      // First: a missing check trigger lets bad references in, which the checks below then find.
      options.onProgress?.({ done, total, what: "Baton's keys and triggers in your tables" });
      report.installation = await this.checkInstallation(repair);
      done++;
    }
    for (const target of targets) {
      options.onProgress?.({ done, total, what: `entity ${target.replication.replica.entity}` });
      const entityReport = await this.reconcileEntity(target, {
        repair,
        approve: options.approve ?? false,
        examples,
        cutTimeoutMs: options.cutTimeoutMs ?? 10_000,
      });
      report.entities.push(entityReport);
      done++;
    }
    for (const invariant of invariants) {
      options.onProgress?.({ done, total, what: `invariant ${invariant.name}` });
      report.invariants.push(
        await runInvariant(this.db, invariant, this.o.publish, { remedy: repair, examples }),
      );
      done++;
    }
    if (integrity) {
      options.onProgress?.({ done, total, what: "this service's own tables" });
      report.integrity = await checkIntegrity(this.db, this.schemaSql, this.o.owned(), {
        repair,
        acceptAltered: options.acceptAltered ?? false,
        examples,
      });
      done++;
    }
    options.onProgress?.({ done, total, what: 'done' });
  }

  private async checkInstallation(
    repair: boolean,
  ): Promise<NonNullable<CaretakerReport['installation']>> {
    const missing = await readMissingObjects(this.db, this.schemaSql);
    if (!repair || missing.length === 0 || !this.o.reinstall) return { missing, restored: 0 };
    await this.o.reinstall();
    const still = await readMissingObjects(this.db, this.schemaSql);
    this.logger?.warn(
      { missing: missing.length, restored: missing.length - still.length },
      "caretaker: restored Baton's missing keys and triggers",
    );
    return { missing, restored: missing.length - still.length };
  }

  private async reconcileEntity(
    target: ReconcileTarget,
    options: { repair: boolean; approve: boolean; examples: number; cutTimeoutMs: number },
  ): Promise<EntityReport & { referencingRows: ReferencingRowsReport[] }> {
    const reconciler = new EntityReconciler(
      this.db,
      this.schemaSql,
      target.replication,
      target.owner,
      target.subscription,
    );
    try {
      const entityReport = await reconciler.run(options);
      const referencingRows = await checkReferencingRows(
        this.db,
        target.replication,
        target.owner,
        options,
      );
      return { ...entityReport, referencingRows };
    } catch (error) {
      this.logger?.error(
        { err: error, entity: target.replication.replica.entity },
        'baton caretaker: entity check failed',
      );
      return {
        ...emptyEntityReport(target.replication.replica.entity, target.owner.name),
        error: (error as Error).message,
        referencingRows: [],
      };
    }
  }

  /** Runs the caretaker every `everyMs` in this process (skipping a run while another is still going). */
  schedule(everyMs: number, options: CaretakerRunOptions = {}): { stop(): Promise<void> } {
    let running: Promise<unknown> | undefined;
    const timer = setInterval(() => {
      if (running) return;
      running = this.run(options)
        .catch((error) => this.logger?.error({ err: error }, 'baton caretaker run failed'))
        .finally(() => {
          running = undefined;
        });
    }, everyMs);
    timer.unref();
    return {
      stop: async () => {
        clearInterval(timer);
        await running;
      },
    };
  }
}

function summarise(report: CaretakerReport): void {
  const t = report.totals;
  for (const e of report.entities) {
    for (const c of DIFFERENCE_CLASSES) {
      t.byClass[c] += e.counts[c];
      if (c !== 'in-flight') t.differences += e.counts[c];
    }
    t.repaired += e.repaired + e.referencingRows.reduce((n, r) => n + r.repaired, 0);
    t.quarantined += e.quarantined;
    t.bytesExchanged += e.bytesExchanged;
    t.referencingRowProblems += e.referencingRows.reduce(
      (n, r) => n + r.dangling + r.policyNotApplied + r.restrictViolations,
      0,
    );
  }
  for (const i of report.invariants) t.invariantViolations += i.violations;
  if (report.installation) {
    const { missing, restored } = report.installation;
    t.missingObjects = missing.length - restored;
  }
  if (report.integrity) {
    const { tables, feed } = report.integrity;
    for (const table of tables) {
      t.integrityProblems += table.altered;
      t.repaired += table.repaired;
    }
    t.integrityProblems +=
      feed.missingPositions +
      feed.missingVersions +
      feed.countersBehind +
      (feed.lastPositionBehind ? 1 : 0);
    t.repaired += feed.repaired;
  }
}
