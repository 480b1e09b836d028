import type { PeerKey } from '../../src/index.ts';

/** What one shop service process needs to know; passed as one JSON argument. */
export interface ServiceConfig {
  service: 'customers' | 'orders' | 'loyalty';
  /** Port of this service's HTTP API and Baton endpoints (127.0.0.1). */
  port: number;
  databaseUrl: string;
  /** Base URLs of the other services (possibly through a fault proxy), e.g. `http://127.0.0.1:4001`. */
  peers: { customers: string; orders: string; loyalty: string };
  /**
   * This service's own Ed25519 key (it signs its requests and answers with
   * it) and the public keys of the others: every service its own identity.
   */
  keys: { keyId: string; privateKey: string; peers: Record<string, PeerKey[]> };
  /** Bearer token for the admin endpoints (reconcile). */
  adminToken: string;
  /** Run the caretaker in process every this many ms (0: only on request). */
  caretakerEveryMs?: number;
  /** Saga worker lease (short in chaos runs, so a killed worker's sagas move on soon). */
  leaseMs?: number;
  /** A name for this process in logs (several processes of one service may run). */
  instance?: string;
  /** Chaos runs: this process's clock runs this far off (Date.now shifted; the database clock is not). */
  clockOffsetMs?: number;
  /** Settings for this service's consumers (chaos runs: a small backlog limit); Baton's defaults otherwise. */
  consumer?: ConsumerSettings;
  /** Record this process's spans (OpenTelemetry SDK) as JSON lines in this file (the trace test). */
  traceFile?: string;
  /** Events travel over NATS JetStream on this cluster instead of the HTTP feed. */
  natsServers?: string[];
}

/** What a service may tune of its consumers (the rest is fixed in service-base.ts). */
export interface ConsumerSettings {
  /** Stop fetching while this many entries wait to be handled (Baton's default: 20,000). */
  maxPendingEntries?: number;
  /** Attempts before an event becomes a dead letter (the shop's default: 20). */
  maxAttempts?: number;
}

export const WELCOME_POINTS = 100;
