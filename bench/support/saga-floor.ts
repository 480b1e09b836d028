import type pg from 'pg';

/**
 * The protocol floor of `saga --local`: the durable writes a Baton saga of
 * three local steps makes, as raw SQL with no Baton code, on a simplified
 * schema (primary keys only: no secondary index, no trigger) — a lower bound
 * for what this machine charges for the protocol itself, its round trips and
 * commits.
 *
 * Per unit, as Baton does it (traced statement by statement, 2026-12-04):
 * the saga row (autocommit); per step a transaction — BEGIN, the fence check
 * locking the saga row, the step's INSERT, the step record, COMMIT; the move
 * to `completed` (autocommit); the caller's read of the saga with its steps.
 * 18 statements, 5 commits; 9 of them prepared (the saga's own, as Baton's
 * are), BEGIN, COMMIT and the step's INSERT not, as in Baton. Not here: the
 * caller's first read (Baton's runs beside the first step), the lease
 * hand-off, the NOTIFY and LISTEN that tell the caller, a claim when no loop
 * is idle, Baton's heavier statements (the key CTE of the start, the
 * per-column upsert of a step record) and its indexes and trigger.
 */
export const FLOOR_TABLES = `
  CREATE TABLE floor_sagas (id text PRIMARY KEY, state text NOT NULL, fence int NOT NULL,
    input jsonb NOT NULL, output jsonb, updated_at timestamptz NOT NULL DEFAULT now());
  CREATE TABLE floor_steps (saga_id text NOT NULL, name text NOT NULL, state text NOT NULL,
    result jsonb, attempts int NOT NULL, completed_at timestamptz, PRIMARY KEY (saga_id, name))`;

const START = {
  name: 'floor-start',
  text: `INSERT INTO floor_sagas (id, state, fence, input) VALUES ($1, 'running', 1, $2)`,
};
const FENCE = {
  name: 'floor-fence',
  text: 'SELECT 1 FROM floor_sagas WHERE id = $1 AND fence = $2 FOR UPDATE',
};
const RECORD = {
  name: 'floor-record',
  text: `INSERT INTO floor_steps (saga_id, name, state, result, attempts, completed_at)
         VALUES ($1, $2, 'completed', $3, 1, now())
         ON CONFLICT (saga_id, name) DO UPDATE SET state = excluded.state,
           result = excluded.result, attempts = excluded.attempts, completed_at = excluded.completed_at`,
};
const COMPLETE = {
  name: 'floor-complete',
  text: `UPDATE floor_sagas SET state = 'completed', output = 'null', updated_at = now()
         WHERE id = $1 AND fence = $2`,
};
const READ = {
  name: 'floor-read',
  text: `SELECT s.id, s.state, s.output, (SELECT json_agg(st ORDER BY st.name) FROM floor_steps st
           WHERE st.saga_id = s.id) AS steps FROM floor_sagas s WHERE s.id = $1`,
};

/** One unit of the floor: `unit` is the id, written into `steps` as `floor-<id>`. */
export async function floorUnit(pool: pg.Pool, id: string, insertStep: string): Promise<void> {
  await pool.query({ ...START, values: [id, JSON.stringify({ unit: id })] });
  for (const step of [1, 2, 3]) {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const fenced = await client.query({ ...FENCE, values: [id, 1] });
      if (fenced.rowCount !== 1) throw new Error(`floor unit ${id}: fence not found`);
      await client.query(insertStep, [`floor-${id}`, step]);
      await client.query({ ...RECORD, values: [id, `step-${step}`, 'null'] });
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }
  const done = await pool.query({ ...COMPLETE, values: [id, 1] });
  if (done.rowCount !== 1) throw new Error(`floor unit ${id}: not completed`);
  const read = await pool.query<{ state: string }>({ ...READ, values: [id] });
  if (read.rows[0]?.state !== 'completed') throw new Error(`floor unit ${id}: read no completion`);
}
