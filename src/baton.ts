import { Caretaker, type ReconcileTarget } from './caretaker/caretaker.ts';
import { setSideRoute } from './caretaker/http-set-side.ts';
import { type InvariantDefinition, validateInvariant } from './caretaker/invariants.ts';
import type { SetSide } from './caretaker/set-side.ts';
import { sqlSetSide } from './caretaker/sql-set-side.ts';
import { channelsFor } from './core/channels.ts';
import { InvalidInputError } from './core/errors.ts';
import type { BatonEvent, EventInput } from './core/event.ts';
import type { EventSchemas } from './core/event-schemas.ts';
import { type Logger, silentLogger } from './core/logger.ts';
import { check, withDefaults } from './core/options.ts';
import { createDashboard, type DashboardOptions } from './dashboard/dashboard-handler.ts';
import type { Database, Executor } from './db/executor.ts';
import { type MigrateResult, migrate } from './db/migrate.ts';
import { schemaIdent } from './db/sql.ts';
import type { ClientAuth, ServerAuth } from './http/auth.ts';
import { DatabaseNonces } from './http/nonce-store.ts';
import { createServiceHandler, type Route, type ServiceHandler } from './http/service-handler.ts';
import { Consumer, type ConsumerOptions } from './messaging/consumer.ts';
import { Outbox } from './messaging/outbox.ts';
import { Relay, type RelayOptions } from './messaging/relay.ts';
import { acceptIfNewer } from './messaging/version-gate.ts';
import { type BatonMetrics, createBatonMetrics } from './metrics.ts';
import type {
  EntityDefinition,
  OnDeletePolicy,
  ReferenceDefinition,
} from './references/definitions.ts';
import { versionsTableSql } from './references/entity-capture.ts';
import type { EntityOwner } from './references/entity-owner.ts';
import type { EntityReplication } from './references/entity-replication.ts';
import { entityRoutes } from './references/entity-routes.ts';
import { type OwnerClient, ownerClient } from './references/owner-client.ts';
import { asReferenceViolation, type Reference } from './references/reference.ts';
import { ReferenceRegistry } from './references/reference-registry.ts';
import { Participant } from './sagas/participant.ts';
import { participantRoutes } from './sagas/participant-routes.ts';
import { Sagas } from './sagas/sagas.ts';
import {
  createFeedHandler,
  createFeedRoute,
  type FeedHandler,
} from './transports/http-feed/feed-handler.ts';
import type { Transport } from './transports/transport.ts';

export interface BatonOptions {
  /** Baton's own database access (see `baton/pg`'s `PgDatabase`). */
  db: Database;
  /** This service's name, stamped on its events as `source`. */
  service: string;
  /** Schema holding Baton's tables. Default `baton`. */
  schema?: string;
  /** Standard Schemas (zod, valibot, …) per event type, checked on publish. */
  events?: EventSchemas;
  /** Refuse to publish event types that have no schema. Default false. */
  strictTypes?: boolean;
  /** Largest payload accepted by `publish`, in bytes of JSON. Default 256 KiB. */
  maxPayloadBytes?: number;
  /**
   * Wake the relay with NOTIFY from publishing transactions. Default true.
   * PostgreSQL serialises the commits of notifying transactions, so only one
   * publish per `notifyMinIntervalMs` carries it; the woken relay polls briefly
   * at a short interval to find the others. False: rely on the relay's polling
   * alone (`relay({ pollIntervalMs })`).
   */
  notifyOnPublish?: boolean;
  /** At most one NOTIFY per this many milliseconds from this instance's publishes. Default 20; 0: every publish. */
  notifyMinIntervalMs?: number;
  logger?: Logger;
}

export interface Baton {
  readonly service: string;
  readonly schema: string;
  readonly db: Database;
  /** Creates or upgrades Baton's tables (safe to call from every process at start-up). */
  migrate(): Promise<MigrateResult>;
  /**
   * Writes events into the outbox in the caller's transaction (`tx` is your
   * `pg` client inside BEGIN … COMMIT, or any `Executor`). They are relayed
   * only if that transaction commits. Validates everything first: an
   * invalid event throws a typed error and writes nothing.
   */
  publish(tx: Executor, events: EventInput | readonly EventInput[]): Promise<BatonEvent[]>;
  /** The relay for this service's outbox; start one or more per service. */
  relay(
    options?: Partial<
      Pick<
        RelayOptions,
        | 'batchSize'
        | 'pollIntervalMs'
        | 'activePollIntervalMs'
        | 'activeForMs'
        | 'retentionMs'
        | 'pruneIntervalMs'
      >
    > & { transport?: Transport },
  ): Relay;
  /** A framework-agnostic HTTP handler serving this service's feed. */
  feedHandler(options: {
    auth: ServerAuth;
    basePath?: string;
    maxLimit?: number;
    maxWaitMs?: number;
    /** Long-polls held at once (default 1,000); past it, 503 with Retry-After. */
    maxWaiters?: number;
    /** The services that may read it (needs per-service keys); default any authenticated caller. */
    callers?: readonly string[];
  }): FeedHandler;
  /** A consumer of another service's events; add handlers with `subscribe`, then `start`. */
  consumer(
    options: Omit<ConsumerOptions, 'db' | 'schemaSql' | 'logger' | 'cursorChannel'>,
  ): Consumer;
  /**
   * For state events: true (and recorded) only if `event.version` is newer
   * than the last version accepted for its key in `scope`. Call inside the
   * handler's transaction.
   */
  acceptIfNewer(
    tx: Executor,
    scope: string,
    event: Pick<BatonEvent, 'key' | 'version'>,
  ): Promise<boolean>;
  /**
   * Owner side: declares an entity this service owns. After `install()`,
   * every insert, update and delete of its table (also plain SQL) emits its
   * state through the outbox in the same transaction; a delete leaves a
   * tombstone.
   */
  entity(definition: EntityDefinition): EntityOwner;
  /** Referrer side: keeps a replica of another service's entity from its events on `consumer`. */
  replicate(options: { entity: string; owner: OwnerClient; consumer: Consumer }): EntityReplication;
  /** Referrer side: declares a referencing column with its on-delete policy (after `replicate`). */
  reference(definition: ReferenceDefinition): Reference;
  /** Owner side: accept delete votes of `restrict` referrers arriving on `consumer`. */
  acceptDeleteVotes(consumer: Consumer): void;
  /** Creates triggers, replica tables and foreign keys for the declarations. Idempotent; call at start-up in every process. */
  install(): Promise<void>;
  /**
   * A service's Baton at start-up, in one call: `migrate()`, `install()`
   * (after your declarations), then a relay for this service's outbox
   * (unless `relay: false`) and your `workers` (consumers, saga workers, a
   * caretaker schedule), in that order. The answer stops them, last started
   * first; the database stays yours to close.
   */
  start(options?: StartOptions): Promise<{ stop(): Promise<void> }>;
  /** Declares a named invariant (SQL returning violating rows) with a remedy, checked by the caretaker. */
  invariant(definition: InvariantDefinition): void;
  /**
   * The caretaker of this service's replicas, references and invariants:
   * `run({ repair })` once, or `schedule(everyMs, options)` in process.
   */
  caretaker(options?: { leaseMs?: number }): Caretaker;
  /** Sagas orchestrated by this service: `define`, `start`, `worker()`, `status`, `replyHandler`. */
  readonly sagas: Sagas;
  /** This service as a saga participant: `reservation(resource, { try, confirm, cancel })`, `action(name, …)`. */
  readonly participant: Participant;
  /** Turns a reference-check error raised by the database into a typed `ReferenceViolation`. */
  referenceError(error: unknown): unknown;
  /** This service's metrics (Prometheus): `metrics.text()`, or serve `metricsHandler`. */
  readonly metrics: BatonMetrics;
  /**
   * `GET {basePath}/metrics` behind its own credential (an operator's, e.g.
   * `{ type: 'bearer', tokens: [token] }` for Prometheus' `bearer_token`) —
   * serve it on the service's port or a separate one.
   */
  metricsHandler(options: { auth: ServerAuth; basePath?: string }): ServiceHandler;
  /**
   * The operator's dashboard (HTML pages under `basePath`, default
   * `/dashboard`) behind a login with one of `operators.tokens`; see
   * `createDashboard`. Serve it on the service's port or a separate one.
   */
  dashboardHandler(
    options: Omit<DashboardOptions, 'db' | 'schema' | 'service' | 'telemetry'>,
  ): ServiceHandler;
  /** All of this service's Baton endpoints (feed, entity lookups, watermark) behind one authentication. */
  httpHandler(options: {
    auth: ServerAuth;
    basePath?: string;
    maxLimit?: number;
    maxWaitMs?: number;
    /** Long-polls held at once (default 1,000); past it, 503 with Retry-After. */
    maxWaiters?: number;
    /**
     * The services that may read the feed and the owned entities (lookups,
     * announcements, set digests); any authenticated caller when not given.
     * Needs per-service keys (`auth.type: "keys"`). Actions and reservations
     * name theirs where they are declared.
     */
    callers?: { feed?: readonly string[]; entities?: readonly string[] };
  }): ServiceHandler;
}

export { channelsFor };

/** A part with a life: a relay, a consumer, a saga worker (start may return at once or once running). */
export interface Startable {
  start(): unknown;
  stop(): unknown;
}

export interface StartOptions {
  /** Start a relay for this service's outbox (default true), or with these options. */
  relay?: boolean | Parameters<Baton['relay']>[0];
  /** More parts to start after the relay, and stop before it. */
  workers?: readonly Startable[];
}

/** Starts `parts` in order; the answer stops the started ones, last first (also after a failed start). */
async function startParts(parts: readonly Startable[]): Promise<{ stop(): Promise<void> }> {
  const started: Startable[] = [];
  const stop = async () => {
    for (const part of started.splice(0).reverse()) await part.stop();
  };
  try {
    for (const part of parts) {
      await part.start();
      started.push(part);
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { stop };
}

/** `BatonOptions` after `compileBatonOptions`: checked, defaults applied, frozen. */
export type CompiledBatonOptions = Readonly<
  Required<Omit<BatonOptions, 'events'>> & Pick<BatonOptions, 'events'>
>;

const SERVICE_NAME = /^[A-Za-z0-9_.-]{1,100}$/;

/** Checks `BatonOptions` once and applies the defaults. */
export function compileBatonOptions(options: BatonOptions): CompiledBatonOptions {
  if (!options?.db)
    throw new InvalidInputError(
      'createBaton needs { db }: a Database such as new PgDatabase({ connectionString }).',
    );
  const o = withDefaults<Required<Omit<BatonOptions, 'events'>> & Pick<BatonOptions, 'events'>>(
    options,
    {
      db: options.db,
      service: options.service,
      schema: 'baton',
      events: undefined,
      strictTypes: false,
      maxPayloadBytes: 256 * 1024,
      notifyOnPublish: true,
      notifyMinIntervalMs: 20,
      logger: silentLogger,
    },
  );
  if (typeof o.service !== 'string' || !SERVICE_NAME.test(o.service)) {
    throw new InvalidInputError(
      `service name ${JSON.stringify(o.service)} must be 1–100 letters, digits, '.', '_' or '-'.`,
    );
  }
  schemaIdent(o.schema);
  check.integer('createBaton', 'maxPayloadBytes', o.maxPayloadBytes);
  check.ms('createBaton', 'notifyMinIntervalMs', o.notifyMinIntervalMs);
  check.flag('createBaton', 'strictTypes', o.strictTypes);
  check.flag('createBaton', 'notifyOnPublish', o.notifyOnPublish);
  return Object.freeze(o);
}

/** The parts of one service's Baton, wired together (what `createBaton` hands out). */
function assemble(
  o: CompiledBatonOptions,
  override: {
    publish?: (tx: Executor, events: EventInput | readonly EventInput[]) => Promise<BatonEvent[]>;
    /** The caretaker may restore missing keys and triggers by `install()` (only where the declarations are code, not records). */
    reinstall?: boolean;
  } = {},
) {
  const schemaSql = schemaIdent(o.schema);
  const channels = channelsFor(o.schema);
  const outbox = new Outbox({
    schemaSql,
    source: o.service,
    schemas: o.events,
    strictTypes: o.strictTypes,
    maxPayloadBytes: o.maxPayloadBytes,
    notifyChannel: o.notifyOnPublish ? channels.outbox : undefined,
    notifyMinIntervalMs: o.notifyMinIntervalMs,
  });
  const publish =
    override.publish ??
    ((tx: Executor, events: EventInput | readonly EventInput[]) => outbox.publish(tx, events));
  const registry = new ReferenceRegistry(
    o.db,
    schemaSql,
    o.service,
    channels.outbox,
    publish,
    o.maxPayloadBytes,
  );
  const invariants: InvariantDefinition[] = [];
  const targets = (): ReconcileTarget[] =>
    [...registry.replications.values()].map((r) => ({
      replication: r.replication,
      owner: r.owner,
      subscription: r.subscription,
    }));
  const caretaker = (options: { leaseMs?: number } = {}) =>
    new Caretaker({
      ...options,
      db: o.db,
      schemaSql,
      targets,
      invariants: () => invariants,
      owned: () =>
        [...registry.owners.values()].map((owner) => ({
          name: owner.def.name,
          versionsTable: versionsTableSql(schemaSql, owner.def.name),
          announce: (id, above) => owner.announce(id, above),
        })),
      reinstall: override.reinstall ? () => registry.install() : undefined,
      publish,
      logger: o.logger,
    });
  return { schemaSql, channels, publish, registry, invariants, targets, caretaker };
}

/** Creates Baton for one service. Options are validated here, once. */
export function createBaton(options: BatonOptions): Baton {
  const o = compileBatonOptions(options);
  const { schemaSql, channels, publish, registry, invariants, caretaker } = assemble(o, {
    reinstall: true,
  });
  const { schema, logger } = o;
  const metrics = createBatonMetrics({ db: o.db, schema, service: o.service });
  const { telemetry } = metrics;
  const sagas = new Sagas(o.db, schemaSql, publish, logger, channels.sagas);
  const makeRelay = (relayOptions: Parameters<Baton['relay']>[0] = {}) =>
    new Relay({
      db: o.db,
      schema,
      schemaSql,
      outboxChannel: channels.outbox,
      feedChannel: channels.feed,
      logger,
      telemetry,
      ...relayOptions,
    });
  const participant = new Participant(o.db, schemaSql);

  return {
    service: o.service,
    metrics,
    metricsHandler: ({ auth, basePath }) =>
      createServiceHandler({
        auth,
        basePath,
        nonces: new DatabaseNonces(o.db, schemaSql),
        routes: [
          {
            method: 'GET',
            pattern: /^\/metrics$/,
            describe: '/metrics',
            handle: async () => ({
              status: 200,
              headers: { 'content-type': metrics.contentType, 'cache-control': 'no-store' },
              body: await metrics.text(),
            }),
          },
        ],
      }),
    dashboardHandler: (dashboardOptions) =>
      createDashboard({ ...dashboardOptions, db: o.db, schema, service: o.service, telemetry }),
    sagas,
    participant,
    schema,
    db: o.db,
    migrate: () => migrate(o.db, schema),
    publish,
    relay: (relayOptions = {}) => makeRelay(relayOptions),
    feedHandler: (feedOptions) =>
      createFeedHandler({
        db: o.db,
        schemaSql,
        feedChannel: channels.feed,
        telemetry,
        ...feedOptions,
        auth: forThisService(feedOptions.auth, o.service),
      }),
    consumer: (consumerOptions) =>
      new Consumer({
        db: o.db,
        schemaSql,
        logger,
        telemetry,
        cursorChannel: channels.cursor,
        ...consumerOptions,
      }),
    acceptIfNewer: (tx, scope, event) =>
      acceptIfNewer(tx, schemaSql, scope, event.key, event.version),
    entity: (definition) => registry.entity(definition),
    replicate: (replicateOptions) => registry.replicate(replicateOptions),
    reference: (definition) => registry.reference(definition),
    acceptDeleteVotes: (consumer) => registry.acceptDeleteVotes(consumer),
    install: () => registry.install(),
    start: async (startOptions = {}) => {
      await migrate(o.db, schema);
      await registry.install();
      const relay = startOptions.relay ?? true;
      const relayParts = relay === false ? [] : [makeRelay(relay === true ? {} : relay)];
      return startParts([...relayParts, ...(startOptions.workers ?? [])]);
    },
    invariant: (definition) => {
      const def = validateInvariant(definition);
      if (invariants.some((i) => i.name === def.name)) {
        throw new InvalidInputError(`invariant "${def.name}" is declared twice.`);
      }
      invariants.push(def);
    },
    caretaker,
    referenceError: (error) => asReferenceViolation(error),
    httpHandler: (httpOptions) => {
      const setSides = new Map<string, SetSide>();
      const { auth, basePath, callers, ...feedOptions } = httpOptions;
      const only = (list: readonly string[] | undefined) => (route: Route) =>
        list ? { ...route, callers: list } : route;
      const feed = createFeedRoute({
        db: o.db,
        schemaSql,
        feedChannel: channels.feed,
        ...feedOptions,
      });
      return createServiceHandler({
        auth: forThisService(auth, o.service),
        basePath,
        nonces: new DatabaseNonces(o.db, schemaSql),
        telemetry,
        routes: [
          only(callers?.feed)(feed.route),
          ...entityRoutes(o.db, schemaSql, () => registry.owners).map(only(callers?.entities)),
          ...participantRoutes(participant),
          only(callers?.entities)(
            setSideRoute(async (name) => {
              // One side per entity, kept: it reuses its whole-set digest for the deeper levels of a run.
              let side = setSides.get(name);
              const owner = registry.owners.get(name);
              if (!side && owner) {
                side = sqlSetSide(o.db, await owner.memberSource());
                setSides.set(name, side);
              }
              return side;
            }),
          ),
        ],
        onClose: feed.close,
      });
    },
  };
}

export interface RecordedCaretakerOptions {
  schema?: string;
  /** Credentials for the owners' endpoints (one secret or token for all of them). */
  auth: ClientAuth;
  /**
   * This service's name, the `source` of events a repair publishes (apologies,
   * restrict votes). Default: the name the service recorded when it installed
   * its entities or references.
   */
  service?: string;
  /** Per call to an owner (default: the owner client's). */
  ownerTimeoutMs?: number;
  /** The run's lease (see `CaretakerOptions.leaseMs`). */
  leaseMs?: number;
}

export interface RecordedCaretaker {
  caretaker: Caretaker;
  /** The service name its repairs publish under (undefined: not recorded and not given — a dry run only). */
  service: string | undefined;
  /** The replicated entities it compares, as recorded. */
  targets: readonly ReconcileTarget[];
  /** Publishes through this database's outbox, as a repair does (throws when `service` is undefined). */
  publish: (tx: Executor, events: EventInput | readonly EventInput[]) => Promise<unknown>;
}

/**
 * The caretaker of a service as it recorded itself in its database
 * (`replicas`, `entity_references`, `entities`), for running it outside the
 * service's process (`baton reconcile`): the same replica stores, references,
 * policies and owners' versions; events a repair publishes go into this
 * database's outbox, for the service's relay. What the database does not
 * hold stays with the service: invariants (their checks and remedies are
 * code) and `onOwnerUnreachable` (used on writes only).
 */
export async function recordedCaretaker(
  db: Database,
  options: RecordedCaretakerOptions,
): Promise<RecordedCaretaker> {
  const schema = options.schema ?? 'baton';
  const s = schemaIdent(schema);
  const recorded = await db.query<{ value: string }>(
    `SELECT value FROM ${s}.settings WHERE name = 'service'`,
  );
  const service = options.service ?? recorded.rows[0]?.value;
  const o = compileBatonOptions({
    db,
    schema,
    service: service ?? 'unrecorded',
    // A repair publishes little: wake the relay every time.
    notifyMinIntervalMs: 0,
  });
  const { registry, caretaker, publish, targets } = assemble(
    o,
    service === undefined
      ? {
          publish: async () => {
            throw new InvalidInputError(
              "cannot publish a repair's events: this database does not record its service's name; pass it (baton reconcile --service <name>).",
            );
          },
        }
      : {},
  );
  const replicas = await db.query<{
    entity: string;
    id_type: string;
    owner: string;
    owner_url: string;
    subscription: string;
  }>(`SELECT entity, id_type, owner, owner_url, subscription FROM ${s}.replicas ORDER BY entity`);
  for (const row of replicas.rows) {
    const idType = await recordedIdType(db, row.entity, row.id_type);
    const owner = ownerClient({
      name: row.owner,
      url: recordedOwnerUrl(row.entity, row.owner_url),
      auth: options.auth,
      ...(options.ownerTimeoutMs === undefined ? {} : { timeoutMs: options.ownerTimeoutMs }),
    });
    registry.replicateRecorded({
      entity: row.entity,
      owner,
      subscription: row.subscription,
      idType,
    });
  }
  const references = await db.query<{
    table_name: string;
    column_name: string;
    entity: string;
    on_delete: OnDeletePolicy;
    snapshot_columns: Record<string, string>;
  }>(
    `SELECT table_name, column_name, entity, on_delete, snapshot_columns FROM ${s}.entity_references ORDER BY name`,
  );
  for (const row of references.rows) {
    recordedDeclaration(`reference ${row.table_name}.${row.column_name}`, () =>
      registry.reference({
        table: row.table_name,
        column: row.column_name,
        entity: row.entity,
        onDelete: row.on_delete,
        snapshotColumns: row.snapshot_columns,
      }),
    );
  }
  const entities = await db.query<{
    name: string;
    table_name: string;
    key_column: string;
    fields: string[];
    personal: string[];
    restrict_referrers: string[];
  }>(
    `SELECT name, table_name, key_column, fields, personal, restrict_referrers FROM ${s}.entities ORDER BY name`,
  );
  for (const row of entities.rows) {
    recordedDeclaration(`entity ${row.name}`, () =>
      registry.entity({
        name: row.name,
        table: row.table_name,
        key: row.key_column,
        fields: row.fields,
        personal: row.personal,
        restrictReferrers: row.restrict_referrers,
      }),
    );
  }
  return {
    caretaker: caretaker(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
    service,
    targets: targets(),
    publish,
  };
}

/**
 * A replica's recorded id type, as PostgreSQL names it: the record is text
 * anyone with write access to the table could change, and it ends up in SQL
 * (`$1::text::<type>`) — so only a type the server resolves is used, in the
 * server's own spelling.
 */
async function recordedIdType(db: Database, entity: string, recorded: string): Promise<string> {
  const refused = () =>
    new InvalidInputError(
      `the recorded id type of replica ${entity} (${JSON.stringify(recorded.slice(0, 100))}) is not a type; was it changed by hand? Restart the service to record it again.`,
    );
  let canonical: string | null | undefined;
  try {
    const r = await db.query<{ t: string | null }>(
      'SELECT format_type(to_regtype($1), NULL) AS t',
      [recorded],
    );
    canonical = r.rows[0]?.t;
  } catch {
    throw refused();
  }
  if (!canonical) throw refused();
  return canonical;
}

/** A recorded owner URL, before Baton sends it signed requests: http(s), no credentials in it. */
function recordedOwnerUrl(entity: string, recorded: string): string {
  let url: URL | undefined;
  try {
    url = new URL(recorded);
  } catch {
    url = undefined;
  }
  if (!url || !/^https?:$/.test(url.protocol) || url.username || url.password || url.hash)
    throw new InvalidInputError(
      `the recorded owner URL of replica ${entity} (${JSON.stringify(recorded.slice(0, 200))}) is not an http(s) URL without credentials; was it changed by hand? Restart the service to record it again.`,
    );
  return recorded;
}

/** Declares what a service recorded; a record that no longer validates says so, and how to mend it. */
function recordedDeclaration(what: string, declare: () => unknown): void {
  try {
    declare();
  } catch (error) {
    throw new InvalidInputError(
      `the recorded ${what} is not valid (${(error as Error).message}); was it changed by hand? Restart the service to record it again.`,
      { cause: error },
    );
  }
}

/** Per-service keys are checked against this service's name unless the auth names it itself. */
function forThisService(auth: ServerAuth, service: string): ServerAuth {
  return auth?.type === 'keys' && auth.service === undefined ? { ...auth, service } : auth;
}
