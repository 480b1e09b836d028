/**
 * A replica row's life (the referrer's copy of one entity id; `none` = the
 * replica has never seen the id):
 *
 *   none       ──state event / lookup: active──► ACTIVE
 *   none       ──owner unreachable, policy accept──► UNVERIFIED
 *   none       ──deleting / deleted seen first──► DELETING / DELETED
 *   UNVERIFIED ──verified: any observed state──► ACTIVE / DELETING / DELETED
 *   ACTIVE     ──update (higher version)──► ACTIVE
 *   ACTIVE     ──deleting (fence)──► DELETING     new references refused
 *   DELETING   ──veto, active again──► ACTIVE
 *   DELETING   ──owner row updated while fenced──► DELETING
 *   any        ──deleted (tombstone)──► DELETED   policies applied; snapshot kept
 *   DELETED    ──re-created by the owner (higher version)──► ACTIVE (or DELETING / DELETED
 *                 when the events in between were missed)
 *
 * Transitions only ever go to a higher version (max-version register): a
 * duplicate or older event changes nothing; only an UNVERIFIED placeholder
 * (version 0) takes any observation. Nothing but `none` becomes UNVERIFIED.
 * The SQL CHECK on each replica table lists the same states.
 */
export const REPLICA_STATES = ['ACTIVE', 'UNVERIFIED', 'DELETING', 'DELETED'] as const;
export type ReplicaState = (typeof REPLICA_STATES)[number];

/** States that accept new references. */
export const REFERENCEABLE: ReadonlySet<ReplicaState> = new Set(['ACTIVE', 'UNVERIFIED']);

const OBSERVABLE: readonly ReplicaState[] = ['ACTIVE', 'DELETING', 'DELETED'];
const TRANSITIONS: Readonly<Record<ReplicaState | 'none', readonly ReplicaState[]>> = {
  none: [...OBSERVABLE, 'UNVERIFIED'],
  UNVERIFIED: OBSERVABLE,
  ACTIVE: OBSERVABLE,
  DELETING: OBSERVABLE,
  DELETED: OBSERVABLE,
};

export function canTransition(from: ReplicaState | 'none', to: ReplicaState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function replicaStateOf(ownerState: 'active' | 'deleting' | 'deleted'): ReplicaState {
  return ownerState === 'active' ? 'ACTIVE' : ownerState === 'deleting' ? 'DELETING' : 'DELETED';
}

/**
 * What observing the owner's state at `version` does to the replica row
 * `before` (undefined: never seen): the row's new state, or undefined when
 * the observation is stale and changes nothing.
 */
export function nextReplicaState(
  before: { state: ReplicaState; version: number } | undefined,
  observed: 'active' | 'deleting' | 'deleted',
  version: number,
): ReplicaState | undefined {
  if (before && before.state !== 'UNVERIFIED' && before.version >= version) return undefined;
  return replicaStateOf(observed);
}
