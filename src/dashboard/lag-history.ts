import type { Executor } from '../db/executor.ts';
import { type MessagingStatus, readMessagingStatus } from '../messaging/status.ts';
import { type Html, html } from './html.ts';

/**
 * Lag over time, for the dashboard's overview: every `everyMs` the relay's
 * backlog and each subscription's pending entries and oldest pending age are
 * read (one status read) and kept in memory, the last `keep` samples. What it
 * is not: a metrics store — it starts empty with the process; Prometheus
 * (`/metrics`, the Grafana dashboard in ops/) keeps the long history.
 */
export interface LagSample {
  at: number;
  backlog: number;
  relayLagSeconds: number;
  subscriptions: Record<string, { pending: number; ageSeconds: number; deadLetters: number }>;
}

export class LagHistory {
  readonly samples: LagSample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> | undefined;

  constructor(
    private readonly db: Executor,
    private readonly schemaSql: string,
    private readonly everyMs: number,
    private readonly keep = 180,
  ) {}

  start(): void {
    if (this.timer) return;
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.everyMs);
    this.timer.unref(); // never what keeps a process alive
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.reading;
  }

  /**
   * Records a status a page read, when no sample is newer than half the
   * interval: page views fill in, but reloading cannot push the history out.
   */
  recordIfDue(status: MessagingStatus, at = Date.now()): void {
    const last = this.samples.at(-1);
    if (!last || at - last.at >= this.everyMs / 2) this.record(status, at);
  }

  private record(status: MessagingStatus, at = Date.now()): void {
    const subscriptions: LagSample['subscriptions'] = {};
    for (const s of status.subscriptions)
      subscriptions[s.name] = {
        pending: s.pending,
        ageSeconds: s.oldestPendingAgeSeconds,
        deadLetters: s.deadLetters,
      };
    this.samples.push({
      at,
      backlog: status.outbox.backlog,
      relayLagSeconds: status.outbox.relayLagSeconds,
      subscriptions,
    });
    if (this.samples.length > this.keep) this.samples.splice(0, this.samples.length - this.keep);
  }

  private sample(): Promise<void> {
    // One read at a time; a slow database skips samples rather than piling them up.
    this.reading ??= readMessagingStatus(this.db, this.schemaSql)
      .then((status) => this.record(status))
      .catch(() => {}) // the page says the database is unreachable; the history just has a gap
      .finally(() => {
        this.reading = undefined;
      });
    return this.reading;
  }
}

/** A small line chart of `values` (oldest first) as inline SVG, its largest value named. */
export function sparkline(values: readonly number[], unit: string): Html {
  if (values.length < 2) return html`<span class="muted">collecting…</span>`;
  const width = 160;
  const height = 28;
  const max = Math.max(...values, 0);
  const step = width / (values.length - 1);
  const points = values
    .map((v, i) => {
      const y = max === 0 ? height - 1 : height - 1 - (v / max) * (height - 2);
      return `${(i * step).toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' ');
  const label = `max ${formatNumber(max)}${unit}`;
  return html`<svg class="spark" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${label}"><polyline points="${points}" fill="none" stroke="currentColor" stroke-width="1.5"/></svg> <span class="muted">${label}</span>`;
}

function formatNumber(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}
