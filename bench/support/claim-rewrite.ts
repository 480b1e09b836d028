import type { Database, Executor } from '../../src/db/executor.ts';

/**
 * Experiment only (never the headline figure): the consumer's claim
 * statement with the key-head test written as a correlated `min(id)`
 * subquery instead of `NOT EXISTS`. PostgreSQL cannot turn a scalar subquery
 * into a join, so it always probes the (subscription, key, id) index per
 * candidate — the quadratic nested loop the planner picks for `NOT EXISTS`
 * when it expects few pending rows cannot happen. Same meaning: a pending
 * entry is its key's head exactly when no open entry of that key is older.
 * With the index in CLAIM_INDEX_SQL the candidates are read in id order
 * from pending entries only, not through all handled history.
 */
export const CLAIM_INDEX_SQL =
  "CREATE INDEX inbox_pending_by_id ON baton.inbox (subscription, id) WHERE status = 'pending'";

const NOT_EXISTS =
  /AND NOT EXISTS \(\s*SELECT 1 FROM (\S+) j\s*WHERE j\.subscription = \$1 AND j\.key = i\.key AND j\.id < i\.id AND j\.status IN (\([^)]*\))\)/;

export function rewriteClaim(text: string): string {
  if (!text.includes('SKIP LOCKED')) return text;
  return text.replace(
    NOT_EXISTS,
    (_, table: string, blocking: string) =>
      `AND i.id = (SELECT min(j.id) FROM ${table} j WHERE j.subscription = $1 AND j.key = i.key AND j.status IN ${blocking})`,
  );
}

/** A `Database` that sends the rewritten claim statement; everything else passes through. */
export function withClaimRewrite(db: Database, onRewrite: () => void): Database {
  const rewrite = (text: string) => {
    const out = rewriteClaim(text);
    if (out !== text) onRewrite();
    return out;
  };
  const wrap = (executor: Executor): Executor => ({
    query: (text, values) => executor.query(rewrite(text), values),
  });
  return {
    query: (text, values) => db.query(rewrite(text), values),
    transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    listen: (channel, onNotify) => db.listen(channel, onNotify),
    close: () => db.close(),
  };
}
