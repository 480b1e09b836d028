import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Telemetry } from './core/telemetry.ts';
import type { Executor } from './db/executor.ts';
import { schemaIdent } from './db/sql.ts';
import { type BatonStatus, readStatus } from './status.ts';

/**
 * One service's metrics in Prometheus' exposition format.
 *
 * prom-client, not the OpenTelemetry metrics API: most of these figures are
 * read from the service's tables when Prometheus scrapes (a pull, exactly
 * what prom-client's `collect` hooks do), and prom-client needs no SDK or
 * exporter in the user's process. The counters and histograms come from the
 * parts as they work (`telemetry`); the gauges from one `readStatus` and one
 * query of the caretaker's runs per scrape.
 *
 * Names and units by Prometheus conventions: `baton_…_total` for counters,
 * `_seconds` for durations and ages, `_timestamp_seconds` for points in time.
 */
export interface BatonMetrics {
  readonly registry: Registry;
  /** Hand to the relay, consumers and the HTTP handler (`createBaton` does). */
  readonly telemetry: Telemetry;
  /** The exposition text (reads the tables once). */
  text(): Promise<string>;
  readonly contentType: string;
}

export function createBatonMetrics(options: {
  db: Executor;
  schema: string;
  service: string;
}): BatonMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service: options.service });
  const s = schemaIdent(options.schema);

  // --- what the parts report as they work ---
  const relayed = new Counter({
    name: 'baton_relay_events_total',
    help: 'Outbox events the relay numbered (moved to the feed).',
    registers: [registry],
  });
  const handlerSeconds = new Histogram({
    name: 'baton_handler_duration_seconds',
    help: "Time a subscription's handler took for one event, by outcome (ok: returned; error: threw).",
    labelNames: ['subscription', 'type', 'outcome'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const failures = new Counter({
    name: 'baton_handler_failures_total',
    help: 'Failed events by what followed: scheduled again (retry) or a dead letter (dead).',
    labelNames: ['subscription', 'outcome'],
    registers: [registry],
  });
  const requests = new Counter({
    name: 'baton_http_requests_total',
    help: "Requests to Baton's endpoints by route, method and status (refused ones included; route none: no such endpoint).",
    labelNames: ['route', 'method', 'status'],
    registers: [registry],
  });
  const requestSeconds = new Histogram({
    name: 'baton_http_request_duration_seconds',
    help: "Time to answer a request to Baton's endpoints, by route (long-polls included).",
    labelNames: ['route'],
    buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 30],
    registers: [registry],
  });
  const telemetry: Telemetry = {
    relayed: (n) => relayed.inc(n),
    handled: (subscription, type, outcome, seconds) =>
      handlerSeconds.observe({ subscription, type, outcome }, seconds),
    failed: (subscription, outcome) => failures.inc({ subscription, outcome }),
    answered: (route, method, status, seconds) => {
      requests.inc({ route, method, status: String(status) });
      requestSeconds.observe({ route }, seconds);
    },
  };

  // --- what the tables say, read once per scrape ---
  let reading: Promise<Snapshot> | undefined;
  const snapshot = () => {
    reading ??= readSnapshot(options.db, options.schema, s).finally(() => {
      // The gauges of one scrape share it; the next scrape reads again.
      setImmediate(() => {
        reading = undefined;
      });
    });
    return reading;
  };
  const gauge = (
    name: string,
    help: string,
    labelNames: string[],
    set: (g: Gauge, snap: Snapshot) => void,
  ) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        set(this, await snapshot());
      },
    });

  gauge(
    'baton_outbox_backlog_events',
    'Committed events the relay has not numbered yet.',
    [],
    (g, x) => g.set(x.status.outbox.backlog),
  );
  gauge(
    'baton_outbox_oldest_unsequenced_age_seconds',
    'Age of the oldest committed event the relay has not numbered (0 when none).',
    [],
    (g, x) => g.set(x.status.outbox.relayLagSeconds),
  );
  gauge(
    'baton_subscription_lag_events',
    'Received events waiting for their handler, per subscription.',
    ['subscription', 'source'],
    (g, x) => {
      for (const sub of x.status.subscriptions)
        g.set({ subscription: sub.name, source: sub.source }, sub.pending);
    },
  );
  gauge(
    'baton_subscription_lag_seconds',
    'Age of the oldest event waiting for its handler, per subscription (0 when none).',
    ['subscription', 'source'],
    (g, x) => {
      for (const sub of x.status.subscriptions)
        g.set({ subscription: sub.name, source: sub.source }, sub.oldestPendingAgeSeconds);
    },
  );
  gauge('baton_dead_letters', 'Dead letters per subscription.', ['subscription'], (g, x) => {
    for (const sub of x.status.subscriptions) g.set({ subscription: sub.name }, sub.deadLetters);
  });
  gauge(
    'baton_subscription_blocked_keys',
    'Keys held up by a dead letter or a failure waiting for its retry, per subscription.',
    ['subscription'],
    (g, x) => {
      for (const sub of x.status.subscriptions) g.set({ subscription: sub.name }, sub.blockedKeys);
    },
  );
  gauge(
    'baton_subscription_stuck',
    "1 while the producer refuses the subscription's cursor (its events were pruned): an operator must move it.",
    ['subscription'],
    (g, x) => {
      for (const sub of x.status.subscriptions)
        g.set({ subscription: sub.name }, sub.stuck ? 1 : 0);
    },
  );
  gauge('baton_sagas', 'Sagas by state.', ['state'], (g, x) => {
    // Every state is there, 0 when none (readSagasStatus).
    for (const [state, n] of Object.entries(x.status.sagas.counts)) g.set({ state }, n);
  });
  gauge('baton_sagas_stuck', 'Sagas waiting for an operator (retry or abort).', [], (g, x) =>
    g.set(x.status.sagas.stuck.total),
  );
  gauge(
    'baton_saga_oldest_active_age_seconds',
    'Age of the oldest saga still running, completing or compensating (0 when none).',
    [],
    (g, x) => g.set(x.status.sagas.oldestActive?.ageSeconds ?? 0),
  );
  gauge(
    'baton_restrict_deletes_pending',
    "Coordinated (restrict) deletes waiting for referrers' votes.",
    [],
    (g, x) => g.set(x.status.references.pendingDeletes.total),
  );
  gauge(
    'baton_quarantined_orphans',
    'Replica rows the owner never heard of, waiting for a second confirmation or approval.',
    [],
    (g, x) => g.set(x.status.references.quarantine.total),
  );
  gauge(
    'baton_caretaker_findings',
    "Differences the caretaker's last run found, by class.",
    ['class'],
    (g, x) => {
      for (const [cls, n] of Object.entries(lastRun(x)?.byClass ?? {})) g.set({ class: cls }, n);
    },
  );
  gauge(
    'baton_invariant_violations',
    "Invariant violations the caretaker's last run found.",
    [],
    (g, x) => g.set(lastRun(x)?.invariantViolations ?? 0),
  );
  gauge(
    'baton_caretaker_last_run_timestamp_seconds',
    "When the caretaker's last run finished (absent before the first).",
    [],
    (g, x) => {
      const run = lastRun(x);
      if (run) g.set(Date.parse(run.finishedAt) / 1000);
    },
  );
  gauge(
    'baton_caretaker_last_clean_run_timestamp_seconds',
    'When the caretaker last finished a run that found nothing to report (absent before the first).',
    [],
    (g, x) => {
      if (x.lastCleanRunAt !== undefined) g.set(x.lastCleanRunAt);
    },
  );

  return {
    registry,
    telemetry,
    text: () => registry.metrics(),
    contentType: registry.contentType,
  };
}

const lastRun = (x: Snapshot) => x.status.references.lastReconcile;

interface Snapshot {
  status: BatonStatus;
  /** When the caretaker last finished a run that found nothing (Unix seconds). */
  lastCleanRunAt: number | undefined;
}

async function readSnapshot(db: Executor, schema: string, s: string): Promise<Snapshot> {
  const status = await readStatus(db, { schema });
  if (!status.references.installed) return { status, lastCleanRunAt: undefined };
  // The last run is in the status; the last clean one is not.
  const clean = await db.query<{ finished: number | null }>(
    `SELECT extract(epoch FROM max(finished_at))::float8 AS finished FROM ${s}.reconcile_runs
      WHERE coalesce((report->'totals'->>'differences')::int, 0) = 0
        AND coalesce((report->'totals'->>'invariantViolations')::int, 0) = 0
        AND coalesce((report->'totals'->>'integrityProblems')::int, 0) = 0
        AND coalesce((report->'totals'->>'referencingRowProblems')::int, 0) = 0
        AND coalesce((report->>'skipped')::boolean, false) = false`,
  );
  return { status, lastCleanRunAt: clean.rows[0]?.finished ?? undefined };
}
