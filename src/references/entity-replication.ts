import { TerminalError } from '../core/errors.ts';
import type { BatonEvent, EventInput } from '../core/event.ts';
import type { Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';
import { quoteIdent } from '../db/sql.ts';
import { type EntityLookup, type EntityState, tableSql } from './definitions.ts';
import { applyDeletePolicy } from './delete-policies.ts';
import type { DeleteVote } from './entity-owner.ts';
import type { Reference } from './reference.ts';
import { nextReplicaState, replicaStateOf } from './replica-states.ts';
import type { ReplicaRow, ReplicaStore } from './replica-store.ts';

export const DELETE_VOTE_TYPE = 'baton.delete-vote';
/** Published for every policy action Baton had to take on a reference it could not verify in time. */
export const APOLOGY_TYPE = 'baton.reference.apology';

export type ApplyResult = 'applied' | 'ignored';

/**
 * Referrer side of one entity: applies the owner's state events to the
 * replica as a max-version register (duplicates and older versions change
 * nothing; a tombstone stands until a newer version re-creates the id), and
 * carries out what each state means here:
 *
 * - deleting: the replica row turns DELETING — which waits for transactions
 *   adding references (they hold a share lock on it) — so no new reference
 *   can appear; if this service holds `restrict` references it counts them
 *   and votes (prepared / vetoed) through its own outbox.
 * - deleted: every reference's on-delete policy runs, in this transaction.
 */
export class EntityReplication {
  constructor(
    readonly schemaSql: string,
    readonly replica: ReplicaStore,
    readonly references: () => readonly Reference[],
    private readonly publish: (tx: Executor, event: EventInput) => Promise<unknown>,
    private readonly service: string,
    /** The owner's current answer about an id (to verify a placeholder; see `handle`). */
    private readonly lookup?: (id: string) => Promise<EntityLookup>,
  ) {}

  /**
   * The consumer handler for `baton.entity.<name>` events. An event about an
   * id the replica holds as an UNVERIFIED placeholder (a reference accepted
   * while the owner could not be asked) does not verify it: the reference
   * may be younger than the event. The owner is asked instead, and its
   * current state applied — a delete then applies its policy as an apology.
   * If the owner cannot be asked, the event fails and is retried.
   */
  readonly handle = async (event: BatonEvent, tx: Executor): Promise<void> => {
    let state = parseEntityState(event.payload, this.replica.entity);
    let version = event.version;
    let reason = `${state.state} event v${event.version}`;
    if (this.lookup && (await this.replica.lock(tx, state.id))?.state === 'UNVERIFIED') {
      const current = await this.lookup(state.id);
      if (current.state !== 'absent' && current.version >= version) {
        state = { ...current, state: current.state };
        version = current.version;
        reason = `${current.state} v${current.version} (the owner's answer, verifying a reference accepted unverified)`;
      }
    }
    await this.apply(tx, state, version, { apology: false, reason });
  };

  /**
   * Applies one observed state of the entity (from an event, a lookup, or
   * the caretaker) as a max-version register: only a version newer than the
   * replica's (or any over an UNVERIFIED placeholder) changes anything, so
   * no source — a late event, a slow lookup, a repair — can move a replica
   * back in time.
   */
  async apply(
    tx: Executor,
    state: EntityState,
    version: number,
    context: { apology: boolean; reason: string },
  ): Promise<ApplyResult> {
    const before = await this.replica.lock(tx, state.id);
    if (nextReplicaState(before, state.state, version) === undefined) return 'ignored';
    const row: ReplicaRow = {
      id: state.id,
      state: replicaStateOf(state.state),
      version,
      fields: state.state === 'deleted' ? deletedSnapshot(before, state.fields) : state.fields,
      personal: state.personal,
    };
    await this.replica.put(tx, row);
    const refs = this.references();
    if (row.state === 'DELETING') {
      const restrict = refs.filter((r) => r.def.onDelete === 'restrict');
      if (restrict.length > 0) await this.vote(tx, restrict, row.id, version);
    } else if (row.state === 'DELETED') {
      // Also over a row that already said DELETED: it may have been set so by hand, with no
      // policy run. The policies are idempotent (a second keep copies the same snapshot).
      const apology = context.apology || before?.state === 'UNVERIFIED';
      for (const ref of refs) {
        const affected = await applyDeletePolicy(tx, this.schemaSql, ref, {
          entity: row,
          apology,
          reason: context.reason,
        });
        // An apology is also an event, so other services (and people) can react to it.
        if (apology && affected > 0) {
          await this.publish(tx, {
            type: APOLOGY_TYPE,
            key: `${this.replica.entity}:${row.id}`,
            payload: {
              reference: ref.name,
              entity: this.replica.entity,
              id: row.id,
              policy: ref.def.onDelete,
              affected,
              reason: context.reason,
            },
          });
        }
      }
    }
    return 'applied';
  }

  private async vote(
    tx: Executor,
    restrict: readonly Reference[],
    id: string,
    version: number,
  ): Promise<void> {
    let count = 0;
    for (const ref of restrict) {
      const r = await queryPrepared<{ n: string }>(
        tx,
        `SELECT count(*) AS n FROM ${tableSql(ref.def.table)} WHERE ${quoteIdent(ref.def.column)} = $1::text::${ref.replica.idType}`,
        [id],
      );
      count += Number(r.rows[0]?.n ?? 0);
    }
    const vote: DeleteVote = {
      entity: this.replica.entity,
      id,
      version,
      referrer: this.service,
      vote: count === 0 ? 'prepared' : 'vetoed',
      references: count,
    };
    await this.publish(tx, { type: DELETE_VOTE_TYPE, key: `${vote.entity}:${id}`, payload: vote });
  }
}

/**
 * The fields a deleted replica row keeps. The first delete takes the
 * tombstone's fields, falling back to the replica's last copy of any field
 * it does not name (an owner announcing the delete of an id it has no record
 * of names none). A delete announced again changes nothing: the snapshot the
 * policies used (anonymised, where the policy is anonymise) stands.
 */
function deletedSnapshot(
  before: ReplicaRow | undefined,
  fields: Record<string, unknown>,
): Record<string, unknown> {
  if (before?.state === 'DELETED') return before.fields;
  return { ...before?.fields, ...fields };
}

/** Validates an entity state payload from the wire; a bad one is a dead letter (TerminalError). */
export function parseEntityState(payload: unknown, entity: string): EntityState {
  const p = payload as Partial<EntityState> | null;
  const problem =
    typeof p !== 'object' || p === null
      ? 'payload is not an object'
      : p.entity !== entity
        ? `entity is ${JSON.stringify(p.entity)}, expected "${entity}"`
        : typeof p.id !== 'string' || p.id.length === 0 || p.id.length > 512
          ? 'id must be a non-empty string of at most 512 characters'
          : !['active', 'deleting', 'deleted'].includes(p.state as string)
            ? `state ${JSON.stringify(p.state)} is not active, deleting or deleted`
            : typeof p.fields !== 'object' || p.fields === null || Array.isArray(p.fields)
              ? 'fields must be an object'
              : !Array.isArray(p.personal) || p.personal.some((x) => typeof x !== 'string')
                ? 'personal must be a list of field names'
                : undefined;
  if (problem) throw new TerminalError(`malformed ${entity} state event: ${problem}`);
  return p as EntityState;
}

/** Validates a delete vote from the wire. */
export function parseDeleteVote(payload: unknown): DeleteVote {
  const v = payload as Partial<DeleteVote> | null;
  const ok =
    typeof v === 'object' &&
    v !== null &&
    typeof v.entity === 'string' &&
    typeof v.id === 'string' &&
    Number.isSafeInteger(v.version) &&
    typeof v.referrer === 'string' &&
    (v.vote === 'prepared' || v.vote === 'vetoed') &&
    Number.isSafeInteger(v.references);
  if (!ok)
    throw new TerminalError(`malformed delete vote: ${JSON.stringify(payload).slice(0, 300)}`);
  return v as DeleteVote;
}
