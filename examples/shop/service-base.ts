import { timingSafeEqual } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import {
  type Baton,
  type ClientAuth,
  type Consumer,
  createBaton,
  type EventSource,
  httpFeedSource,
  type Logger,
  type OwnerClient,
  ownerClient,
  type ParticipantClient,
  participantClient,
  serveHttp,
} from '../../src/index.ts';
import { natsSource, natsTransport } from '../../src/nats.ts';
import { PgDatabase } from '../../src/pg.ts';
import type { ServiceConfig } from './config.ts';
import { type ApiRoute, json, problem, routeApi } from './http-api.ts';

/**
 * Who may read each service's feed and look up its entities: orders and
 * loyalty replicate customers; nobody reads the others' feeds. (Loyalty's
 * points and refund name their one caller, orders, where they are declared.)
 */
const CALLERS: Record<ServiceConfig['service'], { feed: string[]; entities: string[] }> = {
  customers: { feed: ['orders', 'loyalty'], entities: ['orders', 'loyalty'] },
  orders: { feed: [], entities: [] },
  loyalty: { feed: [], entities: [] },
};

/** What every shop service shares: its database, its Baton, its relay, its HTTP server. */
export interface ServiceBase {
  config: ServiceConfig;
  db: PgDatabase;
  baton: Baton;
  /** A consumer of another service's feed (one subscription per source). */
  consumerOf(peer: keyof ServiceConfig['peers'], name?: string): Consumer;
  ownerOf(peer: keyof ServiceConfig['peers']): OwnerClient;
  participant(peer: keyof ServiceConfig['peers']): ParticipantClient;
}

export interface RunningService {
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts a service: migrate, `declare` (entities, references, sagas, …),
 * install, then relay, consumers, workers and the HTTP server. `/baton/*` is
 * Baton's own endpoints; `/admin/reconcile` runs the caretaker (bearer token);
 * everything else is the service's API.
 */
export async function startService(
  config: ServiceConfig,
  logger: Logger,
  declare: (
    base: ServiceBase,
  ) => Promise<{ routes: ApiRoute[]; start?: () => Promise<void>; stop?: () => Promise<void> }>,
): Promise<RunningService> {
  const db = new PgDatabase({
    connectionString: config.databaseUrl,
    max: 12,
    applicationName: `shop-${config.service}`,
  });
  // What has been started so far, stopped again if the start fails half way.
  const started: (() => Promise<void>)[] = [() => db.close()];
  try {
    return await startOn(db, started, config, logger, declare);
  } catch (error) {
    for (const stop of started) await stop().catch(() => {});
    throw error;
  }
}

async function startOn(
  db: PgDatabase,
  started: (() => Promise<void>)[],
  config: ServiceConfig,
  logger: Logger,
  declare: Parameters<typeof startService>[2],
): Promise<RunningService> {
  const baton = createBaton({ db, service: config.service, logger });
  await baton.migrate();
  const nats = config.natsServers ? await natsLink(config.natsServers, config.service) : undefined;
  if (nats) started.unshift(() => nats.close());
  const consumers: Consumer[] = [];
  const { keyId, privateKey, peers } = config.keys;
  // Signs as this service; takes only answers signed by the peer called.
  const auth: ClientAuth = { type: 'keys', service: config.service, keyId, privateKey, peers };
  const base: ServiceBase = {
    config,
    db,
    baton,
    consumerOf(peer, name) {
      const consumer = baton.consumer({
        name: name ?? `${config.service}-from-${peer}`,
        source: nats
          ? nats.sourceOf(peer)
          : httpFeedSource({
              name: peer,
              url: `${config.peers[peer]}/baton`,
              auth,
              requestTimeoutMs: 5_000,
              // The shop's batches are small: an answer past 16 MiB is a hostile peer's.
              maxResponseBytes: 16 * 1024 * 1024,
            }),
        fetchWaitMs: 2_000,
        backoff: { baseMs: 100, maxMs: 2_000 },
        maxAttempts: config.consumer?.maxAttempts ?? 20,
        maxPendingEntries: config.consumer?.maxPendingEntries,
      });
      consumers.push(consumer);
      return consumer;
    },
    ownerOf: (peer) =>
      ownerClient({ name: peer, url: `${config.peers[peer]}/baton`, auth, timeoutMs: 3_000 }),
    participant: (peer) =>
      participantClient({ name: peer, url: `${config.peers[peer]}/baton`, auth, timeoutMs: 5_000 }),
  };
  const service = await declare(base);
  await baton.install();
  const relay = baton.relay({ pollIntervalMs: 100, transport: nats?.transport });
  await relay.start();
  started.unshift(() => relay.stop());
  for (const c of consumers) {
    await c.start();
    started.unshift(() => c.stop());
  }
  await service.start?.();
  if (service.stop) started.unshift(service.stop);
  const caretaker = baton.caretaker();
  const schedule = config.caretakerEveryMs
    ? caretaker.schedule(config.caretakerEveryMs, { repair: true })
    : undefined;
  if (schedule) started.unshift(async () => void (await schedule.stop()));

  const batonHttp = baton.httpHandler({
    auth: { type: 'keys', peers, keyId, privateKey },
    callers: CALLERS[config.service],
  });
  started.unshift(() => batonHttp.close());
  const adminRoutes: ApiRoute[] = [
    {
      method: 'POST',
      pattern: /^\/admin\/reconcile$/,
      handle: async ({ body, headers }) => {
        if (!bearerOk(headers.authorization, config.adminToken))
          return problem(401, 'admin token required');
        const options = (body ?? {}) as { repair?: boolean; approve?: boolean };
        return json(
          200,
          await caretaker.run({
            repair: options.repair === true,
            approve: options.approve === true,
            cutTimeoutMs: 5_000,
          }),
        );
      },
    },
  ];
  // Metrics for Prometheus, behind the operator's token (`bearer_token` in the scrape config).
  const metricsHttp = baton.metricsHandler({
    auth: { type: 'bearer', tokens: [config.adminToken] },
    basePath: '/ops',
  });
  // The operator's dashboard, behind a login with the same operator token.
  const dashboard = baton.dashboardHandler({ operators: { tokens: [config.adminToken] } });
  started.unshift(() => dashboard.close());
  /** Which of Baton's handlers serves a path, if any (else the service's own API). */
  const batonPart = (url: string) =>
    url.startsWith('/baton/')
      ? batonHttp
      : url.startsWith('/ops/')
        ? metricsHttp
        : url === '/dashboard' || url.startsWith('/dashboard/') || url.startsWith('/dashboard?')
          ? dashboard
          : undefined;
  const server = await serveHttp(
    (request, signal) =>
      batonPart(request.url)?.handle(request, signal) ??
      routeApi([...adminRoutes, ...service.routes], request, (err) =>
        logger.error({ err }, `${request.method} ${JSON.stringify(request.url)} failed`),
      ),
    {
      port: config.port,
      refuseEarly: (head) => batonPart(head.url)?.refuseEarly(head),
    },
  );
  return {
    url: server.url,
    async stop() {
      await schedule?.stop();
      await server.close();
      await service.stop?.();
      for (const c of consumers) await c.stop();
      await relay.stop();
      await batonHttp.close();
      await dashboard.close();
      await db.close();
    },
  };
}

/**
 * The service's link to the JetStream cluster: one connection (reconnecting
 * for ever, as a node may be down), its relay's transport, and a source per
 * peer whose stream it reads. (The feed's `callers` do not apply on NATS:
 * who may read a stream is the NATS account's permissions.)
 */
async function natsLink(servers: string[], service: string) {
  const connection = await connect({
    servers,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 200,
    // The cluster may be down while this service starts (a whole-cluster restart): wait for it.
    waitOnFirstConnect: true,
  });
  const transport = await natsTransport({ connection, service });
  return {
    transport,
    sourceOf(peer: string): EventSource {
      // Created on the first fetch: declare() is synchronous about its consumers.
      let source: Promise<EventSource> | undefined;
      const lazy: EventSource = {
        name: peer,
        fetch: async (request) => {
          // Not there yet (the peer's relay creates its stream): asked again on the next fetch.
          source ??= natsSource({ connection, service: peer }).catch((error) => {
            source = undefined;
            throw error;
          });
          return (await source).fetch(request);
        },
        pause: async () => (await source?.catch(() => undefined))?.pause?.(),
        close: async () => (await source)?.close?.(),
      };
      return lazy;
    },
    close: () => connection.close(),
  };
}

function bearerOk(header: string | undefined, token: string): boolean {
  const given = Buffer.from(header?.replace(/^Bearer /i, '') ?? '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
