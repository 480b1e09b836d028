import pg from 'pg';

/**
 * Everything the checks read, taken once from the three databases (each in
 * one repeatable-read transaction, so each database is seen at one instant;
 * the shop is quiet when the checker runs, so the three instants agree).
 * Checks are pure functions of this snapshot and the history.
 */
export type ShopDatabase = 'customers' | 'orders' | 'loyalty';
export const SHOP_DATABASES: readonly ShopDatabase[] = ['customers', 'orders', 'loyalty'];

export interface OutboxRow {
  eventId: string;
  type: string;
  key: string;
  version: number;
  seq: number | null;
  relayedAt: Date | null;
}

export interface InboxRow {
  id: number;
  subscription: string;
  position: string;
  eventId: string | null;
  type: string | null;
  key: string;
  version: number | null;
  status: 'pending' | 'handled' | 'dead' | 'discarded';
  attempts: number;
  lastError: string | null;
}

export interface Subscription {
  name: string;
  source: string;
  types: string[];
}

export interface ReplicaRow {
  id: string;
  state: string;
  version: number;
  fields: Record<string, unknown>;
}

/** One UPDATE of a replica row by Baton, from the harness's audit (replica-audit.ts). */
export interface ReplicaAuditRow {
  seq: number;
  id: string;
  old: { state: string; version: number };
  new: { state: string; version: number };
  at: Date;
}

export interface SagaRow {
  id: string;
  name: string;
  key: string | null;
  input: Record<string, unknown>;
  state: string;
  output: Record<string, unknown> | null;
  error: string | null;
}

export interface SagaStep {
  sagaId: string;
  name: string;
  kind: string;
  state: string;
}

export interface OrderRow {
  id: string;
  customerId: string | null;
  customerName: string | null;
  points: number;
  state: string;
}

export interface Movement {
  id: number;
  customerId: string;
  points: number;
  kind: string;
  reference: string;
}

export interface BarrierRow {
  txId: string;
  branch: string;
  op: string;
  resource: string;
  outcome: string;
}

/** What every service database has: Baton's messaging tables. */
export interface MessagingSnapshot {
  outbox: OutboxRow[];
  prunedThrough: number;
  lastSeq: number;
  subscriptions: Subscription[];
  inbox: InboxRow[];
}

export interface ShopSnapshot {
  messaging: Record<ShopDatabase, MessagingSnapshot>;
  customers: {
    rows: { id: string; name: string; address: string }[];
    tombstones: { id: string; version: number }[];
    /** The version of each customer's latest state event, by event key (`customer:<id>`). */
    entityVersions: Map<string, number>;
  };
  orders: {
    orders: OrderRow[];
    sagas: SagaRow[];
    steps: SagaStep[];
    replica: ReplicaRow[];
    replicaAudit: ReplicaAuditRow[];
  };
  loyalty: {
    accounts: { customerId: string; balance: number }[];
    holds: { txId: string; branch: string; customerId: string; points: number }[];
    movements: Movement[];
    barrier: BarrierRow[];
    replica: ReplicaRow[];
    replicaAudit: ReplicaAuditRow[];
  };
}

type Rows = Record<string, unknown>[];

export async function readSnapshot(urls: Record<ShopDatabase, string>): Promise<ShopSnapshot> {
  const [customers, orders, loyalty] = await Promise.all(
    SHOP_DATABASES.map((name) => readDatabase(urls[name], QUERIES[name])),
  );
  const c = customers!;
  const o = orders!;
  const l = loyalty!;
  return {
    messaging: { customers: messagingOf(c), orders: messagingOf(o), loyalty: messagingOf(l) },
    customers: {
      rows: c.customers!.map((r) => ({
        id: String(r.id),
        name: String(r.name),
        address: String(r.address),
      })),
      tombstones: c.tombstones!.map((r) => ({ id: String(r.id), version: Number(r.version) })),
      entityVersions: new Map(
        c.entity_versions!.map((r) => [String(r.stream_key), Number(r.version)]),
      ),
    },
    orders: {
      orders: o.orders!.map((r) => ({
        id: String(r.id),
        customerId: r.customer_id === null ? null : String(r.customer_id),
        customerName: r.customer_name === null ? null : String(r.customer_name),
        points: Number(r.points),
        state: String(r.state),
      })),
      sagas: o.sagas!.map((r) => ({
        id: String(r.id),
        name: String(r.name),
        key: r.key === null ? null : String(r.key),
        input: (r.input ?? {}) as Record<string, unknown>,
        state: String(r.state),
        output: (r.output ?? null) as Record<string, unknown> | null,
        error: r.error === null ? null : String(r.error),
      })),
      steps: o.saga_steps!.map((r) => ({
        sagaId: String(r.saga_id),
        name: String(r.name),
        kind: String(r.kind),
        state: String(r.state),
      })),
      replica: replicaOf(o.replica!),
      replicaAudit: replicaAuditOf(o.replica_audit!),
    },
    loyalty: {
      accounts: l.accounts!.map((r) => ({
        customerId: String(r.customer_id),
        balance: Number(r.balance),
      })),
      holds: l.holds!.map((r) => ({
        txId: String(r.tx_id),
        branch: String(r.branch),
        customerId: String(r.customer_id),
        points: Number(r.points),
      })),
      movements: l.movements!.map((r) => ({
        id: Number(r.id),
        customerId: String(r.customer_id),
        points: Number(r.points),
        kind: String(r.kind),
        reference: String(r.reference),
      })),
      barrier: l.barrier!.map((r) => ({
        txId: String(r.tx_id),
        branch: String(r.branch),
        op: String(r.op),
        resource: String(r.resource),
        outcome: String(r.outcome),
      })),
      replica: replicaOf(l.replica!),
      replicaAudit: replicaAuditOf(l.replica_audit!),
    },
  };
}

const MESSAGING: Record<string, string> = {
  outbox:
    'SELECT event_id::text, type, key, version, seq, relayed_at FROM baton.outbox ORDER BY id',
  relay_state: 'SELECT last_seq, pruned_through FROM baton.relay_state',
  subscriptions: 'SELECT name, source, types FROM baton.subscriptions',
  inbox: `SELECT id, subscription, position, event_id::text, type, key, version, status, attempts, last_error
          FROM baton.inbox ORDER BY id`,
};

const REPLICA = 'SELECT id::text, state, version, fields FROM baton.replica_customer';
/** The harness installs the audit when it starts the shop (replica-audit.ts); the checker needs it. */
const REPLICA_AUDIT = `SELECT seq, id, old_state, new_state, old_version, new_version, at
  FROM chaos.replica_audit ORDER BY seq`;

const QUERIES: Record<ShopDatabase, Record<string, string>> = {
  customers: {
    ...MESSAGING,
    customers: 'SELECT id, name, address FROM customers',
    tombstones: "SELECT id, version FROM baton.tombstones WHERE entity = 'customer'",
    entity_versions: "SELECT 'customer:' || id AS stream_key, version FROM baton.versions_customer",
  },
  orders: {
    ...MESSAGING,
    orders: 'SELECT id, customer_id, customer_name, points, state FROM orders',
    sagas: 'SELECT id, name, key, input, state, output, error FROM baton.sagas',
    saga_steps: 'SELECT saga_id, name, kind, state FROM baton.saga_steps',
    replica: REPLICA,
    replica_audit: REPLICA_AUDIT,
  },
  loyalty: {
    ...MESSAGING,
    accounts: 'SELECT customer_id, balance FROM accounts',
    holds: 'SELECT tx_id, branch, customer_id, points FROM holds',
    movements: 'SELECT id, customer_id, points, kind, reference FROM movements ORDER BY id',
    barrier: 'SELECT tx_id, branch, op, resource, outcome FROM baton.barrier',
    replica: REPLICA,
    replica_audit: REPLICA_AUDIT,
  },
};

async function readDatabase(
  url: string,
  queries: Record<string, string>,
): Promise<Record<string, Rows>> {
  const client = new pg.Client({ connectionString: url, application_name: 'shop-chaos-checker' });
  await client.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const result: Record<string, Rows> = {};
    for (const [name, sql] of Object.entries(queries))
      result[name] = (await client.query(sql)).rows as Rows;
    await client.query('COMMIT');
    return result;
  } finally {
    await client.end();
  }
}

function messagingOf(rows: Record<string, Rows>): MessagingSnapshot {
  const state = rows.relay_state![0] ?? {};
  return {
    outbox: rows.outbox!.map((r) => ({
      eventId: String(r.event_id),
      type: String(r.type),
      key: String(r.key),
      version: Number(r.version),
      seq: r.seq === null ? null : Number(r.seq),
      relayedAt: (r.relayed_at as Date | null) ?? null,
    })),
    prunedThrough: Number(state.pruned_through ?? 0),
    lastSeq: Number(state.last_seq ?? 0),
    subscriptions: rows.subscriptions!.map((r) => ({
      name: String(r.name),
      source: String(r.source),
      types: (r.types as string[] | null) ?? [],
    })),
    inbox: rows.inbox!.map((r) => ({
      id: Number(r.id),
      subscription: String(r.subscription),
      position: String(r.position),
      eventId: r.event_id === null ? null : String(r.event_id),
      type: r.type === null ? null : String(r.type),
      key: String(r.key),
      version: r.version === null ? null : Number(r.version),
      status: r.status as InboxRow['status'],
      attempts: Number(r.attempts),
      lastError: r.last_error === null ? null : String(r.last_error),
    })),
  };
}

function replicaOf(rows: Rows): ReplicaRow[] {
  return rows.map((r) => ({
    id: String(r.id),
    state: String(r.state),
    version: Number(r.version),
    fields: (r.fields ?? {}) as Record<string, unknown>,
  }));
}

function replicaAuditOf(rows: Rows): ReplicaAuditRow[] {
  return rows.map((r) => ({
    seq: Number(r.seq),
    id: String(r.id),
    old: { state: String(r.old_state), version: Number(r.old_version) },
    new: { state: String(r.new_state), version: Number(r.new_version) },
    at: r.at as Date,
  }));
}
