/**
 * A replica row's life (the referrer's copy of one entity id):
 *
 *   (none)     ──state event / lookup: active──► ACTIVE
 *   (none)     ──owner unreachable, policy accept──► UNVERIFIED
 *   UNVERIFIED ──verified active──► ACTIVE
 *   ACTIVE     ──deleting (fence)──► DELETING     new references refused
 *   DELETING   ──veto, active again──► ACTIVE
 *   any        ──deleted (tombstone)──► DELETED   policies applied; snapshot kept
 *   DELETED    ──re-created by the owner (higher version)──► ACTIVE
 *
 * Transitions only ever go to a higher version (max-version register): a
 * duplicate or older event changes nothing. The SQL CHECK on each replica
 * table lists the same states.
 */
export const REPLICA_STATES = ['ACTIVE', 'UNVERIFIED', 'DELETING', 'DELETED'] as const;
export type ReplicaState = (typeof REPLICA_STATES)[number];

/** States that accept new references. */
export const REFERENCEABLE: ReadonlySet<ReplicaState> = new Set(['ACTIVE', 'UNVERIFIED']);

export function replicaStateOf(ownerState: 'active' | 'deleting' | 'deleted'): ReplicaState {
  return ownerState === 'active' ? 'ACTIVE' : ownerState === 'deleting' ? 'DELETING' : 'DELETED';
}
