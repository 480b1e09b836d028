/**
 * What Baton's parts report as they work, for the service's metrics
 * (`baton.metrics()`): the counts and timings no table holds. Every call is
 * cheap (a counter or a histogram bucket); a part given none reports to
 * `noTelemetry`.
 */
export interface Telemetry {
  /** The relay numbered `events` outbox rows in one pass. */
  relayed(events: number): void;
  /** A handler ran for one event: how long, and whether it returned or threw. */
  handled(subscription: string, type: string, outcome: 'ok' | 'error', seconds: number): void;
  /** A failed event was scheduled again, or became a dead letter. */
  failed(subscription: string, outcome: 'retry' | 'dead'): void;
  /** An HTTP request to Baton's endpoints was answered (refused ones included). */
  answered(route: string, method: string, status: number, seconds: number): void;
}

const noop = () => {};
export const noTelemetry: Telemetry = {
  relayed: noop,
  handled: noop,
  failed: noop,
  answered: noop,
};
