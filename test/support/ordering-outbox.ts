import pg from 'pg';
import type { Executor } from '../../src/index.ts';

/** One outbox row as the ordering tests inspect it. */
export interface OutboxRow {
  id: number;
  eventId: string;
  key: string;
  version: number;
  seq: number | null;
}

/** Empties the producer's outbox and puts the relay back at position 0. */
export async function resetProducer(db: Executor): Promise<void> {
  await db.query('TRUNCATE baton.outbox, baton.stream_versions RESTART IDENTITY');
  await db.query(
    'UPDATE baton.relay_state SET last_seq = 0, pruned_through = 0, dispatched_through = 0',
  );
}

/** The whole outbox, sequenced rows first in feed order, then the rest by insertion id. */
export async function readOutbox(db: Executor): Promise<OutboxRow[]> {
  const r = await db.query<{
    id: string;
    event_id: string;
    key: string;
    version: string;
    seq: string | null;
  }>(
    `SELECT id::text, event_id::text, key, version::text, seq::text
     FROM baton.outbox o ORDER BY o.seq NULLS LAST, o.id`,
  );
  return r.rows.map((row) => ({
    id: Number(row.id),
    eventId: row.event_id,
    key: row.key,
    version: Number(row.version),
    seq: row.seq === null ? null : Number(row.seq),
  }));
}

/**
 * Everything wrong with a fully relayed outbox, as readable lines (empty when
 * it is right): every row has a position, positions are exactly 1..n, and each
 * key's versions appear in position order as 1, 2, 3, …
 */
export function feedProblems(rows: readonly OutboxRow[]): string[] {
  const problems: string[] = [];
  const sequenced = rows.filter((r) => r.seq !== null).sort((a, b) => a.seq! - b.seq!);
  for (const r of rows) {
    if (r.seq === null) problems.push(`never sequenced: ${r.key} v${r.version} (id ${r.id})`);
  }
  sequenced.forEach((r, i) => {
    if (r.seq !== i + 1) problems.push(`position ${i + 1} holds seq ${r.seq} (gap or duplicate)`);
  });
  problems.push(...perKeyVersionProblems(sequenced));
  return problems;
}

/** Checks that, in the given order, each key's versions run 1, 2, 3, … without a gap or a repeat. */
export function perKeyVersionProblems(
  ordered: readonly { key: string; version: number }[],
): string[] {
  const problems: string[] = [];
  const last = new Map<string, number>();
  for (const e of ordered) {
    const expected = (last.get(e.key) ?? 0) + 1;
    if (e.version !== expected) {
      problems.push(`key ${e.key}: saw v${e.version} where v${expected} was due`);
    }
    last.set(e.key, e.version);
  }
  return problems;
}

/** Dedicated connections (not a pool), so each test controls exactly which transaction is open where. */
export async function openClients(url: string, n: number): Promise<pg.Client[]> {
  const clients: pg.Client[] = [];
  for (let i = 0; i < n; i++) {
    const c = new pg.Client({ connectionString: url, application_name: `ordering-${i}` });
    c.on('error', () => {});
    await c.connect();
    clients.push(c);
  }
  return clients;
}

export async function closeClients(clients: readonly pg.Client[]): Promise<void> {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
}

export function backendPid(client: pg.Client): number {
  const pid = (client as unknown as { processID?: number }).processID;
  if (typeof pid !== 'number') throw new Error('client has no backend pid (not connected?)');
  return pid;
}

/** True while the backend `pid` waits for a heavyweight lock (e.g. another transaction's row lock). */
export async function isWaitingOnLock(db: Executor, pid: number): Promise<boolean> {
  const r = await db.query<{ waiting: boolean }>(
    `SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) AS waiting
     FROM pg_stat_activity WHERE pid = $1`,
    [pid],
  );
  return r.rows[0]?.waiting === true;
}
