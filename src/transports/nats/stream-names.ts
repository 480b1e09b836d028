/**
 * Where a service's events live in JetStream: one stream per producing
 * service (`BATON_<SERVICE>`), one subject per event type under
 * `baton.<service>.` — so a subscriber can filter by type on the broker.
 * Names are derived, never configured twice: the transport and every source
 * of the same service agree on them.
 */
export function streamName(service: string): string {
  return `BATON_${service.toUpperCase().replace(/[^A-Z0-9_-]/g, '_')}`;
}

export function subjectPrefix(service: string): string {
  return `baton.${service.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

/** The subject of one event type (`order.placed` → `baton.orders.order.placed`); empty tokens made `_`. */
export function subjectFor(service: string, type: string): string {
  const tokens = type.split('.').map((t) => t || '_');
  return `${subjectPrefix(service)}.${tokens.join('.')}`;
}

/**
 * The control subjects between a producer's relay and its subscribers
 * (repair requests, head announcements): outside `baton.>`, so the stream
 * never stores them (a request on a stored subject is answered by JetStream
 * itself, with an acknowledgement).
 */
export function controlSubject(service: string, what: 'repair' | 'head'): string {
  return `baton-control.${service.replace(/[^A-Za-z0-9_-]/g, '_')}.${what}`;
}
