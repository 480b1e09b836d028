import pg from 'pg';
import type { RunningShop } from '../launcher.ts';
import type { HistoryEntry } from './history.ts';
import type { Schedule } from './schedule.ts';
import type { SeededRandom } from './seeded-random.ts';

/**
 * Tampering: changes made behind Baton's back while events flow, so that the
 * caretaker — run live, beside the workload — has something to repair under
 * load. Each runs in a transaction with `session_replication_role = replica`,
 * which switches ordinary triggers off: no entity event, no tombstone, and
 * no row in the replica audit (replica-audit.ts records Baton's own writes
 * only, which is what the "never moved back" check judges).
 *
 *   owner-delete          a customer deleted at the owner with its trigger off: an orphan in every replica
 *   owner-update          a customer's address changed at the owner, trigger off: replicas differ at the same version
 *   replica-state         a referrer's replica row flipped ACTIVE ↔ DELETED by hand
 *   replica-version-up    a replica row's version raised by hand (a version the owner never issued)
 *   replica-version-down  a replica row's version lowered by hand (it looks stale)
 *   replica-fields        a replica row's copied address edited by hand
 *
 * The owner's changes are commands like any other: they go into the history
 * (as the out-of-order writers' updates do), so the checker knows them.
 * Poisoned customers (poison.ts) are left alone: their key must drain in
 * order, untouched, once healed.
 */
export const TAMPER_VARIANTS = [
  'owner-delete',
  'owner-update',
  'replica-state',
  'replica-version-up',
  'replica-version-down',
  'replica-fields',
] as const;
export type TamperVariant = (typeof TAMPER_VARIANTS)[number];

/** One tamper, drawn from `random` (always the same number of draws, so a replay repeats them). */
export async function tamper(
  shop: RunningShop,
  random: SeededRandom,
  schedule: Schedule,
  onCommand: (entry: Omit<HistoryEntry, 'seq'>) => void,
): Promise<void> {
  const variant = random.pick(TAMPER_VARIANTS);
  const referrer = random.pick(['orders', 'loyalty'] as const);
  const draw = random.next();
  const amount = random.int(1, 3);
  const address = `${random.int(1, 999)} Backdoor Lane`;
  if (variant === 'owner-delete' || variant === 'owner-update') {
    await tamperOwner(shop, variant, draw, address, schedule, onCommand);
  } else {
    await tamperReplica(shop, referrer, variant, draw, amount, address, schedule);
  }
}

async function tamperOwner(
  shop: RunningShop,
  variant: 'owner-delete' | 'owner-update',
  draw: number,
  address: string,
  schedule: Schedule,
  onCommand: (entry: Omit<HistoryEntry, 'seq'>) => void,
): Promise<void> {
  const startedAt = Date.now();
  const id = await withTriggersOff(shop.databaseUrls.customers, async (client) => {
    const picked = await pickRow(client, 'customers', draw, 'true');
    if (!picked) return undefined;
    if (variant === 'owner-delete')
      await client.query('DELETE FROM customers WHERE id = $1', [picked.id]);
    else
      await client.query('UPDATE customers SET address = $2 WHERE id = $1', [picked.id, address]);
    return picked.id;
  });
  if (!id) return;
  // Committed: an acknowledged command like any other (no update id: applied as it came).
  onCommand({
    op: variant === 'owner-delete' ? 'delete' : 'update',
    args: variant === 'owner-delete' ? { id } : { id, address },
    outcome: 'ok',
    status: 200,
    startedAt,
    endedAt: Date.now(),
  });
  schedule.record(
    'tamper',
    `customers:${id}`,
    variant === 'owner-delete'
      ? 'deleted with its trigger off (no event, no tombstone)'
      : `address set to "${address}" with its trigger off (no event, same version)`,
    variant,
  );
}

type ReplicaVariant = Exclude<TamperVariant, `owner-${string}`>;

/** Each hand edit of a replica row: which rows it takes, its SET clause and that clause's value ($2). */
const REPLICA_EDITS: Record<
  ReplicaVariant,
  { rows: string; set: string; value: (amount: number, address: string) => unknown[] }
> = {
  'replica-state': {
    rows: "state IN ('ACTIVE', 'DELETED')",
    set: "state = CASE state WHEN 'ACTIVE' THEN 'DELETED' ELSE 'ACTIVE' END",
    value: () => [],
  },
  'replica-version-up': {
    rows: "state IN ('ACTIVE', 'DELETED')",
    set: 'version = version + $2::int',
    value: (amount) => [amount],
  },
  'replica-version-down': {
    rows: "state IN ('ACTIVE', 'DELETED')",
    set: 'version = greatest(version - $2::int, 0)',
    value: (amount) => [amount],
  },
  // A deleted row's fields are the snapshot its policies took: only live copies are edited.
  'replica-fields': {
    rows: "state = 'ACTIVE'",
    set: "fields = jsonb_set(fields, '{address}', to_jsonb($2::text))",
    value: (_amount, address) => [address],
  },
};

async function tamperReplica(
  shop: RunningShop,
  referrer: 'orders' | 'loyalty',
  variant: ReplicaVariant,
  draw: number,
  amount: number,
  address: string,
  schedule: Schedule,
): Promise<void> {
  const edit = REPLICA_EDITS[variant];
  const change = await withTriggersOff(shop.databaseUrls[referrer], async (client) => {
    const before = await pickRow(client, 'baton.replica_customer', draw, edit.rows);
    if (!before) return undefined;
    const after = await client.query<{ state: string; version: string }>(
      `UPDATE baton.replica_customer SET ${edit.set} WHERE id = $1 RETURNING state, version`,
      [before.id, ...edit.value(amount, address)],
    );
    const row = after.rows[0];
    return {
      id: before.id,
      from: `${before.state} v${before.version}`,
      to: `${row?.state} v${row?.version}`,
    };
  });
  if (!change) return;
  schedule.record(
    'tamper',
    `${referrer}:replica_customer:${change.id}`,
    `${change.from} → ${change.to}${variant === 'replica-fields' ? `, address "${address}"` : ''} by hand`,
    variant,
  );
}

/**
 * One row of `table` (locked), chosen by `draw` in [0, 1) among the rows
 * matching `which` in id order — a seeded pick over whatever rows exist now.
 * Poisoned customers are never picked.
 */
async function pickRow(
  client: pg.Client,
  table: string,
  draw: number,
  which: string,
): Promise<{ id: string; state?: string; version?: string } | undefined> {
  const where = `id NOT LIKE 'poison-%' AND ${which}`;
  const columns = table === 'customers' ? 'id' : 'id, state, version';
  const r = await client.query<{ id: string; state?: string; version?: string }>(
    `SELECT ${columns} FROM ${table} WHERE ${where} ORDER BY id
     OFFSET floor($1::float8 * (SELECT count(*) FROM ${table} WHERE ${where}))::bigint LIMIT 1 FOR UPDATE`,
    [draw],
  );
  return r.rows[0];
}

/** Runs `work` in one transaction with ordinary triggers off (Baton's capture and the audit). */
async function withTriggersOff<T>(
  url: string,
  work: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'shop-chaos-tamper' });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL session_replication_role = replica');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    await client.end().catch(() => {});
  }
}
