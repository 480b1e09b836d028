import { InvalidInputError, TerminalError } from '../core/errors.ts';
import type { EventInput } from '../core/event.ts';
import type { Database, Executor } from '../db/executor.ts';
import type { Consumer } from '../messaging/consumer.ts';
import {
  type EntityDefinition,
  entityEventType,
  type ReferenceDefinition,
  referenceName,
  validateEntity,
  validateReference,
} from './definitions.ts';
import { EntityOwner } from './entity-owner.ts';
import { DELETE_VOTE_TYPE, EntityReplication, parseDeleteVote } from './entity-replication.ts';
import type { OwnerClient } from './owner-client.ts';
import { Reference } from './reference.ts';
import { ReplicaStore } from './replica-store.ts';

/**
 * Everything one service declares about references: entities it owns,
 * entities it replicates (and from whom), and its referencing columns.
 * Declarations are validated at once; `install()` creates what they need in
 * the database (idempotent, safe from several processes).
 */
export class ReferenceRegistry {
  readonly owners = new Map<string, EntityOwner>();
  readonly replications = new Map<
    string,
    { replication: EntityReplication; owner: OwnerClient; subscription: string }
  >();
  readonly references: Reference[] = [];

  constructor(
    private readonly db: Database,
    private readonly schemaSql: string,
    private readonly service: string,
    private readonly outboxChannel: string,
    private readonly publish: (tx: Executor, event: EventInput) => Promise<unknown>,
    /** Largest entity state event the capture trigger writes (the service's `maxPayloadBytes`). */
    private readonly maxPayloadBytes?: number,
  ) {}

  entity(definition: EntityDefinition): EntityOwner {
    const def = validateEntity(definition);
    if (this.owners.has(def.name))
      throw new InvalidInputError(`entity "${def.name}" is declared twice.`);
    const owner = new EntityOwner(this.db, this.schemaSql, def, {
      service: this.service,
      outboxChannel: this.outboxChannel,
      maxPayloadBytes: this.maxPayloadBytes,
    });
    this.owners.set(def.name, owner);
    return owner;
  }

  /** Keeps a replica of `entity` from its owner's events on `consumer`; lookups go to `owner`. */
  replicate(options: {
    entity: string;
    owner: OwnerClient;
    consumer: Consumer;
  }): EntityReplication {
    const replication = this.replicateFrom({ ...options, subscription: options.consumer.name });
    options.consumer.subscribe(entityEventType(options.entity), replication.handle);
    return replication;
  }

  /**
   * A replica as the service recorded it (`baton reconcile` outside its
   * process): the same replica store and policies, its events handled by the
   * service's own consumer, `subscription`.
   */
  replicateRecorded(options: {
    entity: string;
    owner: OwnerClient;
    subscription: string;
    idType: string;
  }): EntityReplication {
    const replication = this.replicateFrom(options);
    // `install()` is what sets it in the service; here the registry row is the record of it.
    replication.replica.idType = options.idType;
    return replication;
  }

  private replicateFrom(options: {
    entity: string;
    owner: OwnerClient;
    subscription: string;
  }): EntityReplication {
    if (this.replications.has(options.entity))
      throw new InvalidInputError(`entity "${options.entity}" is replicated twice.`);
    const store = new ReplicaStore(this.schemaSql, options.entity);
    const replication = new EntityReplication(
      this.schemaSql,
      store,
      () => this.references.filter((r) => r.def.entity === options.entity),
      this.publish,
      this.service,
      (id) => options.owner.lookup(options.entity, id),
    );
    this.replications.set(options.entity, {
      replication,
      owner: options.owner,
      subscription: options.subscription,
    });
    return replication;
  }

  reference(definition: ReferenceDefinition): Reference {
    const def = validateReference(definition);
    const replicated = this.replications.get(def.entity);
    if (!replicated) {
      throw new InvalidInputError(
        `reference ${referenceName(def)} → ${def.entity}: call replicate({ entity: '${def.entity}', owner, consumer }) first, so Baton knows where ${def.entity} comes from.`,
      );
    }
    if (this.references.some((r) => r.name === referenceName(def))) {
      throw new InvalidInputError(`reference ${referenceName(def)} is declared twice.`);
    }
    const reference = new Reference(
      this.schemaSql,
      def,
      replicated.replication.replica,
      replicated.owner,
    );
    this.references.push(reference);
    return reference;
  }

  /** Owner side: record delete votes arriving from restrict referrers on `consumer`. */
  acceptDeleteVotes(consumer: Consumer): void {
    consumer.subscribe(DELETE_VOTE_TYPE, async (event, tx) => {
      const vote = parseDeleteVote(event.payload);
      // The feed is the voter's: a vote naming another referrer would cast that referrer's vote.
      if (vote.referrer !== consumer.sourceName)
        throw new TerminalError(
          `delete vote for ${vote.entity} ${vote.id} names referrer "${vote.referrer}" but came from ${consumer.sourceName}'s feed: a service votes only for itself`,
        );
      const owner = this.owners.get(vote.entity);
      if (!owner)
        throw new InvalidInputError(
          `delete vote for entity "${vote.entity}", which this service does not own`,
        );
      await owner.recordVote(tx, vote);
    });
  }

  async install(): Promise<void> {
    for (const reference of this.references) await reference.verifyTable(this.db);
    for (const owner of this.owners.values()) await owner.install();
    if (this.replications.size > 0) {
      // Owners record it in EntityOwner.install; a referrer needs it too: a caretaker
      // run outside this process (`baton reconcile`) publishes apologies and votes in its name.
      await this.db.query(
        `INSERT INTO ${this.schemaSql}.settings (name, value) VALUES ('service', $1), ('outbox_channel', $2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value`,
        [this.service, this.outboxChannel],
      );
    }
    for (const [entity, { replication, owner, subscription }] of this.replications) {
      const refs = this.references.filter((r) => r.def.entity === entity);
      const types = new Set(await Promise.all(refs.map((r) => r.columnType(this.db))));
      if (types.size > 1) {
        throw new InvalidInputError(
          `references to ${entity} have different column types (${[...types].join(', ')}); make them the same.`,
        );
      }
      await replication.replica.install(this.db, [...types][0] ?? 'text', {
        name: owner.name,
        url: owner.url,
        subscription,
      });
    }
    for (const reference of this.references) await reference.install(this.db);
  }
}
