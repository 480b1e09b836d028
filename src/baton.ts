import { Caretaker } from './caretaker/caretaker.ts';
import { setSideRoute } from './caretaker/http-set-side.ts';
import { type InvariantDefinition, validateInvariant } from './caretaker/invariants.ts';
import type { SetSide } from './caretaker/set-side.ts';
import { sqlSetSide } from './caretaker/sql-set-side.ts';
import { channelsFor } from './core/channels.ts';
import { InvalidInputError } from './core/errors.ts';
import type { BatonEvent, EventInput } from './core/event.ts';
import type { EventSchemas } from './core/event-schemas.ts';
import { type Logger, silentLogger } from './core/logger.ts';
import type { Database, Executor } from './db/executor.ts';
import { type MigrateResult, migrate } from './db/migrate.ts';
import { schemaIdent } from './db/sql.ts';
import type { ServerAuth } from './http/auth.ts';
import { createServiceHandler, type ServiceHandler } from './http/service-handler.ts';
import { Consumer, type ConsumerOptions } from './messaging/consumer.ts';
import { Outbox } from './messaging/outbox.ts';
import { Relay, type RelayOptions } from './messaging/relay.ts';
import { acceptIfNewer } from './messaging/version-gate.ts';
import type { EntityDefinition, ReferenceDefinition } from './references/definitions.ts';
import { versionsTableSql } from './references/entity-capture.ts';
import type { EntityOwner } from './references/entity-owner.ts';
import type { EntityReplication } from './references/entity-replication.ts';
import { entityRoutes } from './references/entity-routes.ts';
import type { OwnerClient } from './references/owner-client.ts';
import { asReferenceViolation, type Reference } from './references/reference.ts';
import { ReferenceRegistry } from './references/reference-registry.ts';
import { Participant } from './sagas/participant.ts';
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
  /** Declares a named invariant (SQL returning violating rows) with a remedy, checked by the caretaker. */
  invariant(definition: InvariantDefinition): void;
  /**
   * The caretaker of this service's replicas, references and invariants:
   * `run({ repair })` once, or `schedule(everyMs, options)` in process.
   */
  caretaker(): Caretaker;
  /** Sagas orchestrated by this service: `define`, `start`, `worker()`, `status`, `replyHandler`. */
  readonly sagas: Sagas;
  /** This service as a saga participant: `reservation(resource, { try, confirm, cancel })`, `action(name, …)`. */
  readonly participant: Participant;
  /** Turns a reference-check error raised by the database into a typed `ReferenceViolation`. */
  referenceError(error: unknown): unknown;
  /** All of this service's Baton endpoints (feed, entity lookups, watermark) behind one authentication. */
  httpHandler(options: {
    auth: ServerAuth;
    basePath?: string;
    maxLimit?: number;
    maxWaitMs?: number;
  }): ServiceHandler;
}

export { channelsFor };

/** Creates Baton for one service. Options are validated here, once. */
export function createBaton(options: BatonOptions): Baton {
  if (!options?.db)
    throw new InvalidInputError(
      'createBaton needs { db }: a Database such as new PgDatabase({ connectionString }).',
    );
  if (typeof options.service !== 'string' || !/^[A-Za-z0-9_.-]{1,100}$/.test(options.service)) {
    throw new InvalidInputError(
      `service name ${JSON.stringify(options.service)} must be 1–100 letters, digits, '.', '_' or '-'.`,
    );
  }
  const schema = options.schema ?? 'baton';
  const schemaSql = schemaIdent(schema);
  const channels = channelsFor(schema);
  const logger = options.logger ?? silentLogger;
  const maxPayloadBytes = options.maxPayloadBytes ?? 256 * 1024;
  if (!(Number.isInteger(maxPayloadBytes) && maxPayloadBytes > 0)) {
    throw new InvalidInputError('maxPayloadBytes must be a positive integer.');
  }
  const outbox = new Outbox({
    schemaSql,
    source: options.service,
    schemas: options.events,
    strictTypes: options.strictTypes ?? false,
    maxPayloadBytes,
    notifyChannel: options.notifyOnPublish === false ? undefined : channels.outbox,
    notifyMinIntervalMs: nonNegative('notifyMinIntervalMs', options.notifyMinIntervalMs ?? 20),
  });

  const publish = (tx: Executor, events: EventInput | readonly EventInput[]) =>
    outbox.publish(tx, events);
  const invariants: InvariantDefinition[] = [];
  const registry = new ReferenceRegistry(
    options.db,
    schemaSql,
    options.service,
    channels.outbox,
    publish,
    maxPayloadBytes,
  );

  const sagas = new Sagas(options.db, schemaSql, publish, logger);
  const participant = new Participant(options.db, schemaSql);

  return {
    service: options.service,
    sagas,
    participant,
    schema,
    db: options.db,
    migrate: () => migrate(options.db, schema),
    publish,
    relay: (relayOptions = {}) =>
      new Relay({
        db: options.db,
        schema,
        schemaSql,
        outboxChannel: channels.outbox,
        feedChannel: channels.feed,
        logger,
        ...relayOptions,
      }),
    feedHandler: (feedOptions) =>
      createFeedHandler({ db: options.db, schemaSql, feedChannel: channels.feed, ...feedOptions }),
    consumer: (consumerOptions) =>
      new Consumer({
        db: options.db,
        schemaSql,
        logger,
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
    invariant: (definition) => {
      const def = validateInvariant(definition);
      if (invariants.some((i) => i.name === def.name)) {
        throw new InvalidInputError(`invariant "${def.name}" is declared twice.`);
      }
      invariants.push(def);
    },
    caretaker: () =>
      new Caretaker({
        db: options.db,
        schemaSql,
        targets: () =>
          [...registry.replications.values()].map((r) => ({
            replication: r.replication,
            owner: r.owner,
            subscription: r.consumer.name,
          })),
        invariants: () => invariants,
        owned: () =>
          [...registry.owners.values()].map((owner) => ({
            name: owner.def.name,
            versionsTable: versionsTableSql(schemaSql, owner.def.name),
            announce: (id, above) => owner.announce(id, above),
          })),
        publish,
        logger,
      }),
    referenceError: (error) => asReferenceViolation(error),
    httpHandler: (httpOptions) => {
      const setSides = new Map<string, SetSide>();
      const { auth, basePath, ...feedOptions } = httpOptions;
      const feed = createFeedRoute({
        db: options.db,
        schemaSql,
        feedChannel: channels.feed,
        ...feedOptions,
      });
      return createServiceHandler({
        auth,
        basePath,
        routes: [
          feed.route,
          ...entityRoutes(options.db, schemaSql, () => registry.owners),
          ...participant.routes(),
          setSideRoute(async (name) => {
            // One side per entity, kept: it reuses its whole-set digest for the deeper levels of a run.
            let side = setSides.get(name);
            const owner = registry.owners.get(name);
            if (!side && owner) {
              side = sqlSetSide(options.db, await owner.memberSource());
              setSides.set(name, side);
            }
            return side;
          }),
        ],
        onClose: feed.close,
      });
    },
  };
}

function nonNegative(name: string, value: number): number {
  if (!(Number.isFinite(value) && value >= 0)) {
    throw new InvalidInputError(`${name} must be a number of milliseconds ≥ 0 (got ${value}).`);
  }
  return value;
}
