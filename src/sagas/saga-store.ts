import { LeaseLostError } from '../core/errors.ts';
import type { Database, Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';
import { START_STEP } from './saga-definition.ts';
import type { SagaState, StepKind, StepState } from './saga-states.ts';

export interface SagaRow {
  /** The database's clock when the row was read (timers compare against it, not a worker's clock). */
  dbNow: Date;
  id: string;
  name: string;
  key: string | null;
  input: unknown;
  state: SagaState;
  stuckFrom: 'completing' | 'compensating' | null;
  output: unknown;
  error: string | null;
  fence: number;
  deadline: Date | null;
  runs: number;
  /** The trace context the saga was started in (W3C headers), or null. */
  trace: Record<string, string> | null;
}

export interface StepRow {
  name: string;
  kind: StepKind;
  ordinal: number;
  state: StepState;
  result: unknown;
  attempts: number;
  compensationAttempts: number;
  lastError: string | null;
  retryAt: Date | null;
  waitUntil: Date | null;
  correlationId: string | null;
}

const SAGA_COLUMNS = `now() AS db_now, id, name, key, input, state, stuck_from, output, error, fence, deadline, runs, trace`;

/**
 * The orchestrator's saga tables. Every write a worker makes names its
 * fencing token (`fence`): a worker whose lease was taken over gets
 * `LeaseLostError` and its transaction rolls back.
 */
export class SagaStore {
  constructor(
    readonly db: Database,
    readonly schemaSql: string,
  ) {}

  /** Inserts a saga (idempotent by id). Returns the stored row and whether this call created it. */
  async insert(
    executor: Executor,
    saga: {
      id: string;
      name: string;
      key: string | undefined;
      input: unknown;
      deadlineMs: number | undefined;
      /** Lease the new saga to this worker at once (its first fence is 1, as a claim would make it). */
      leaseTo?: { owner: string; leaseMs: number } | undefined;
      /** The trace context it is started in (W3C headers), if any. */
      trace?: Record<string, string> | undefined;
    },
  ): Promise<{ created: boolean; row: SagaRow; sameInput: boolean }> {
    const s = this.schemaSql;
    const inserted = await queryPrepared<RawSaga>(
      executor,
      `WITH k AS (
         INSERT INTO ${s}.saga_keys AS sk (key, last_seq) SELECT $3, 1 WHERE $3::text IS NOT NULL
         ON CONFLICT (key) DO UPDATE SET last_seq = sk.last_seq + 1
         RETURNING last_seq
       )
       INSERT INTO ${s}.sagas (id, name, key, key_seq, input, deadline, lease_owner, lease_until, fence, runs, trace)
       VALUES ($1, $2, $3, (SELECT last_seq FROM k), $4,
               CASE WHEN $5::bigint IS NULL THEN NULL ELSE now() + make_interval(secs => $5::double precision / 1000) END,
               $6, CASE WHEN $6::text IS NULL THEN NULL ELSE now() + make_interval(secs => $7::double precision / 1000) END,
               CASE WHEN $6::text IS NULL THEN 0 ELSE 1 END, CASE WHEN $6::text IS NULL THEN 0 ELSE 1 END,
               $8::jsonb)
       ON CONFLICT (id) DO NOTHING
       RETURNING ${SAGA_COLUMNS}`,
      [
        saga.id,
        saga.name,
        saga.key ?? null,
        JSON.stringify(saga.input ?? null),
        saga.deadlineMs ?? null,
        saga.leaseTo?.owner ?? null,
        saga.leaseTo?.leaseMs ?? 0,
        saga.trace?.traceparent ? JSON.stringify(saga.trace) : null,
      ],
    );
    if (inserted.rows[0]) return { created: true, row: toSaga(inserted.rows[0]), sameInput: true };
    // jsonb equality: key order and spacing do not matter.
    const existing = await queryPrepared<RawSaga & { same: boolean }>(
      executor,
      `SELECT ${SAGA_COLUMNS}, input = $2::jsonb AS same FROM ${this.schemaSql}.sagas WHERE id = $1`,
      [saga.id, JSON.stringify(saga.input ?? null)],
    );
    const row = existing.rows[0] as RawSaga & { same: boolean };
    return { created: false, row: toSaga(row), sameInput: row.same };
  }

  async get(executor: Executor, id: string): Promise<SagaRow | undefined> {
    const r = await queryPrepared<RawSaga>(
      executor,
      `SELECT ${SAGA_COLUMNS} FROM ${this.schemaSql}.sagas WHERE id = $1`,
      [id],
    );
    return r.rows[0] && toSaga(r.rows[0]);
  }

  /**
   * Leases the next saga that is due: active, its wake time passed, no live
   * lease, and — for a keyed saga — no earlier unfinished saga of its key
   * (one at a time per key, in arrival order). Bumps the fencing token.
   */
  async claim(
    worker: string,
    leaseMs: number,
    names: readonly string[],
  ): Promise<SagaRow | undefined> {
    const s = this.schemaSql;
    const r = await queryPrepared<RawSaga>(
      this.db,
      `UPDATE ${s}.sagas SET lease_owner = $1, lease_until = now() + make_interval(secs => $2::double precision / 1000),
         fence = fence + 1, runs = runs + 1, updated_at = now()
       WHERE id = (
         SELECT g.id FROM ${s}.sagas g
         WHERE g.state IN ('running', 'completing', 'compensating') AND g.wake_at <= now()
           AND (g.lease_until IS NULL OR g.lease_until < now())
           AND g.name = ANY($3)
           AND (g.key IS NULL OR NOT EXISTS (
             SELECT 1 FROM ${s}.sagas p
             WHERE p.key = g.key AND p.key_seq < g.key_seq
               AND p.state IN ('running', 'completing', 'compensating', 'stuck')))
         ORDER BY g.wake_at
         LIMIT 1
         FOR UPDATE SKIP LOCKED)
       RETURNING ${SAGA_COLUMNS}`,
      [worker, leaseMs, names],
    );
    return r.rows[0] && toSaga(r.rows[0]);
  }

  /** Extends the lease; false when another worker holds the saga now. */
  async renew(id: string, fence: number, leaseMs: number): Promise<boolean> {
    const r = await queryPrepared(
      this.db,
      `UPDATE ${this.schemaSql}.sagas SET lease_until = now() + make_interval(secs => $3::double precision / 1000)
       WHERE id = $1 AND fence = $2`,
      [id, fence, leaseMs],
    );
    return r.rowCount === 1;
  }

  async steps(executor: Executor, id: string): Promise<Map<string, StepRow>> {
    const r = await queryPrepared<RawStep>(
      executor,
      `SELECT name, kind, ordinal, state, result, attempts, compensation_attempts, last_error, retry_at,
              wait_until, correlation_id
       FROM ${this.schemaSql}.saga_steps WHERE saga_id = $1`,
      [id],
    );
    return new Map(r.rows.map((row) => [row.name, toStep(row)]));
  }

  /** Runs `fn` in a transaction that first checks (and locks) the worker's fence. */
  fenced<T>(id: string, fence: number, fn: (tx: Executor) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) => {
      await this.checkFence(tx, id, fence);
      return fn(tx);
    });
  }

  async checkFence(tx: Executor, id: string, fence: number): Promise<void> {
    const r = await queryPrepared(
      tx,
      `SELECT 1 FROM ${this.schemaSql}.sagas WHERE id = $1 AND fence = $2 FOR UPDATE`,
      [id, fence],
    );
    if (r.rows.length === 0) throw new LeaseLostError(id, fence);
  }

  /** Upserts a step record. */
  async putStep(tx: Executor, sagaId: string, step: StepRecord): Promise<void> {
    await queryPrepared(tx, this.putStepSql(false), stepValues(sagaId, step));
  }

  /**
   * Records a step in one statement that checks (and locks) the worker's
   * fence itself — one round trip instead of a fenced transaction's four.
   * @throws LeaseLostError when another worker holds the saga now.
   */
  async putStepFenced(sagaId: string, fence: number, step: StepRecord): Promise<void> {
    const r = await queryPrepared(this.db, this.putStepSql(true), [
      ...stepValues(sagaId, step),
      fence,
    ]);
    if (r.rowCount !== 1) throw new LeaseLostError(sagaId, fence);
  }

  private putStepSql(fenced: boolean): string {
    const guard = fenced
      ? `WITH lease AS (SELECT 1 FROM ${this.schemaSql}.sagas WHERE id = $1 AND fence = $13 FOR UPDATE) `
      : '';
    return guard + this.insertStepSql(fenced, (n) => `$${n}`);
  }

  /**
   * The step upsert. `p(n)` is the placeholder of step value n (see
   * `stepValues`; 1 is the saga id). `guarded`: only if the CTE `lease` found the fence.
   */
  private insertStepSql(guarded: boolean, p: (n: number) => string): string {
    const s = this.schemaSql;
    const source = guarded ? 'SELECT' : 'VALUES (';
    const close = guarded ? ' WHERE EXISTS (SELECT 1 FROM lease)' : ')';
    return `INSERT INTO ${s}.saga_steps (saga_id, name, kind, ordinal, state, result, attempts,
         compensation_attempts, last_error, retry_at, wait_until, correlation_id, completed_at, compensated_at)
       ${source} ${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}::int, ${p(5)}, ${p(6)}::jsonb, ${p(7)}::int, ${p(8)}::int, ${p(9)},
         ${p(10)}::timestamptz, ${p(11)}::timestamptz, ${p(12)},
         CASE WHEN ${p(5)} IN ('completed', 'failed') THEN now() END,
         CASE WHEN ${p(5)} = 'compensated' THEN now() END${close}
       ON CONFLICT (saga_id, name) DO UPDATE SET ${[
         ...STEP_COLUMNS.map((c) => [c, `excluded.${c}`]),
         ...STEP_TIMES.map((c) => [c, `coalesce(excluded.${c}, ${s}.saga_steps.${c})`]),
       ]
         .map(
           ([c, value]) =>
             `${c} = CASE WHEN ${keepsFinished(s)} THEN ${s}.saga_steps.${c} ELSE ${value} END`,
         )
         .join(', ')}`;
  }

  /**
   * Releases the saga until `wakeAt` (timer, retry backoff, awaited reply) —
   * or its deadline, if that comes first while it runs forward: a saga
   * sleeping past its deadline must wake to compensate.
   */
  async suspend(
    tx: Executor,
    id: string,
    wakeAt: Date,
    waitingFor: string,
    awaitedCommands: readonly string[] = [],
  ): Promise<void> {
    // A reply that arrived while this run was going must not be slept through.
    await queryPrepared(
      tx,
      `UPDATE ${this.schemaSql}.sagas SET
         wake_at = CASE WHEN EXISTS (SELECT 1 FROM ${this.schemaSql}.saga_steps st
                          WHERE st.saga_id = $1 AND st.name = ANY($4) AND st.state <> 'pending')
                   THEN now()
                   WHEN state = 'running' AND deadline < $2::timestamptz THEN deadline
                   ELSE $2 END,
         waiting_for = $3, lease_owner = NULL, lease_until = NULL, updated_at = now()
       WHERE id = $1`,
      [id, wakeAt, waitingFor, awaitedCommands],
    );
  }

  /**
   * Records the reply to an asynchronous command step and wakes its saga.
   * Returns false when no step awaits this correlation id (a duplicate or
   * late reply: nothing changes).
   */
  async deliverReply(
    tx: Executor,
    correlationId: string,
    reply: { ok: boolean; result?: unknown; error?: string },
  ): Promise<boolean> {
    const r = await queryPrepared<{ saga_id: string }>(
      tx,
      `UPDATE ${this.schemaSql}.saga_steps SET state = CASE WHEN $2 THEN 'completed' ELSE 'failed' END,
         result = $3, last_error = $4, completed_at = now()
       WHERE correlation_id = $1 AND state = 'pending'
       RETURNING saga_id`,
      [
        correlationId,
        reply.ok,
        JSON.stringify(reply.result ?? null),
        reply.ok ? null : (reply.error ?? 'the participant refused the command'),
      ],
    );
    const sagaId = r.rows[0]?.saga_id;
    if (!sagaId) return false;
    await queryPrepared(tx, `UPDATE ${this.schemaSql}.sagas SET wake_at = now() WHERE id = $1`, [
      sagaId,
    ]);
    return true;
  }

  async setState(
    tx: Executor,
    id: string,
    state: SagaState,
    fields: StateFields = {},
  ): Promise<void> {
    await queryPrepared(tx, this.setStateSql(false), stateValues(id, state, fields));
  }

  /**
   * Changes the saga's state in one statement that checks the worker's fence
   * itself (the UPDATE locks the row like a fenced transaction would).
   * @throws LeaseLostError when another worker holds the saga now.
   */
  async setStateFenced(
    id: string,
    fence: number,
    state: SagaState,
    fields: StateFields = {},
  ): Promise<void> {
    const r = await queryPrepared(this.db, this.setStateSql(true), [
      ...stateValues(id, state, fields),
      fence,
    ]);
    if (r.rowCount !== 1) throw new LeaseLostError(id, fence);
  }

  /**
   * Records a step and changes the saga's state in one statement that checks
   * (and locks) the worker's fence — a run's last remote step and its
   * `completing`, for one round trip and one commit.
   * @throws LeaseLostError when another worker holds the saga now.
   */
  async setStateWithStepFenced(
    id: string,
    fence: number,
    state: SagaState,
    fields: StateFields,
    step: StepRecord,
  ): Promise<void> {
    const s = this.schemaSql;
    // $1–$9 the state, $10 the fence, $11–$21 the step's values 2–12 ($1 is the saga id for both).
    const stepParam = (n: number) => (n === 1 ? '$1' : `$${n + 9}`);
    const r = await queryPrepared(
      this.db,
      `WITH lease AS (SELECT 1 FROM ${s}.sagas WHERE id = $1 AND fence = $10 FOR UPDATE),
       step AS (${this.insertStepSql(true, stepParam)})
       ${this.setStateSql(false)} AND EXISTS (SELECT 1 FROM lease)`,
      [...stateValues(id, state, fields), fence, ...stepValues(id, step).slice(1)],
    );
    if (r.rowCount !== 1) throw new LeaseLostError(id, fence);
  }

  /**
   * Marks the confirmed steps and moves the saga to `completed`, in one
   * statement that checks (and locks) the worker's fence.
   * @throws LeaseLostError when another worker holds the saga now.
   */
  async completeFenced(sagaId: string, fence: number, confirmedSteps: string[]): Promise<void> {
    const s = this.schemaSql;
    const r = await queryPrepared(
      this.db,
      `WITH lease AS (SELECT 1 FROM ${s}.sagas WHERE id = $1 AND fence = $10 FOR UPDATE),
       marked AS (UPDATE ${s}.saga_steps SET state = 'confirmed'
                  WHERE saga_id = $1 AND name = ANY($11::text[]) AND EXISTS (SELECT 1 FROM lease))
       ${this.setStateSql(false)} AND EXISTS (SELECT 1 FROM lease)`,
      [...stateValues(sagaId, 'completed', {}), fence, confirmedSteps],
    );
    if (r.rowCount !== 1) throw new LeaseLostError(sagaId, fence);
  }

  /**
   * Marks a completed step confirmed or compensated, in one statement that
   * checks (and locks) the worker's fence.
   * @throws LeaseLostError when another worker holds the saga now.
   */
  async markStepFenced(
    sagaId: string,
    fence: number,
    step: string,
    state: 'confirmed' | 'compensated',
  ): Promise<void> {
    const s = this.schemaSql;
    // A step may have no record (a crash between a remote call and its record):
    // then nothing is marked, and only the lease decides whether that is an error.
    const r = await queryPrepared<{ held: boolean }>(
      this.db,
      `WITH lease AS (SELECT 1 FROM ${s}.sagas WHERE id = $1 AND fence = $4 FOR UPDATE),
       marked AS (${MARK_STEP_SQL(s)} AND EXISTS (SELECT 1 FROM lease) RETURNING 1)
       SELECT EXISTS (SELECT 1 FROM lease) AS held, (SELECT count(*) FROM marked) AS marked`,
      [sagaId, step, state, fence],
    );
    if (!r.rows[0]?.held) throw new LeaseLostError(sagaId, fence);
  }

  /** Marks a step confirmed or compensated inside the caller's (fenced) transaction. */
  /** The `@start` step's row (the starting transaction's undo), written completed when first asked for. */
  async startStep(
    sagaId: string,
  ): Promise<{ state: StepRow['state']; compensationAttempts: number }> {
    const r = await queryPrepared<{ state: StepRow['state']; compensation_attempts: number }>(
      this.db,
      `WITH made AS (
         INSERT INTO ${this.schemaSql}.saga_steps (saga_id, name, kind, ordinal, state, completed_at)
         VALUES ($1, '${START_STEP}', 'local', -1, 'completed', now())
         ON CONFLICT (saga_id, name) DO NOTHING RETURNING state, compensation_attempts)
       SELECT state, compensation_attempts FROM made
       UNION ALL
       SELECT state, compensation_attempts FROM ${this.schemaSql}.saga_steps
        WHERE saga_id = $1 AND name = '${START_STEP}'`,
      [sagaId],
    );
    const row = r.rows[0] as { state: StepRow['state']; compensation_attempts: number };
    return { state: row.state, compensationAttempts: row.compensation_attempts };
  }

  async markStep(
    tx: Executor,
    sagaId: string,
    step: string,
    state: 'confirmed' | 'compensated',
  ): Promise<void> {
    await queryPrepared(tx, MARK_STEP_SQL(this.schemaSql), [sagaId, step, state]);
  }

  private setStateSql(fenced: boolean): string {
    return `UPDATE ${this.schemaSql}.sagas SET state = $2,
         output = CASE WHEN $3::boolean THEN $4::jsonb ELSE output END,
         error = CASE WHEN $5::boolean THEN $6 ELSE error END,
         stuck_from = $7, waiting_for = NULL, wake_at = now(),
         lease_owner = CASE WHEN $8::boolean THEN NULL ELSE lease_owner END,
         lease_until = CASE WHEN $8::boolean THEN NULL ELSE lease_until END,
         finished_at = CASE WHEN $9::boolean THEN now() ELSE finished_at END, updated_at = now()
       WHERE id = $1${fenced ? ' AND fence = $10' : ''}`;
  }
}

/** The columns the step upsert overwrites with the new record's values. */
const STEP_COLUMNS = [
  'state',
  'result',
  'attempts',
  'compensation_attempts',
  'last_error',
  'retry_at',
  'wait_until',
  'correlation_id',
] as const;

/** The times the step upsert keeps when the new record does not set them. */
const STEP_TIMES = ['completed_at', 'compensated_at'] as const;

/**
 * Whether the upsert keeps the stored step as it is: a finished step is
 * never turned back into an unfinished one. A failure recorded after a
 * COMMIT whose answer was lost — while that COMMIT was still landing, after
 * the step looked at its record — would otherwise replace the landed
 * `completed` one and the step would run twice (found by an outside review).
 */
function keepsFinished(s: string): string {
  const finished = "('completed', 'confirmed', 'compensated')";
  return `(${s}.saga_steps.state IN ${finished} AND excluded.state NOT IN ${finished})`;
}

/** What a step record holds (the upsert fills in the rest). */
export type StepRecord = Pick<StepRow, 'name' | 'kind' | 'ordinal' | 'state'> & Partial<StepRow>;

interface StateFields {
  output?: unknown;
  error?: string | null;
  stuckFrom?: 'completing' | 'compensating' | null;
}

function stateValues(id: string, state: SagaState, fields: StateFields): unknown[] {
  const terminal = state === 'completed' || state === 'compensated';
  return [
    id,
    state,
    fields.output !== undefined,
    fields.output === undefined ? null : JSON.stringify(fields.output),
    fields.error !== undefined,
    fields.error ?? null,
    fields.stuckFrom ?? null,
    terminal || state === 'stuck',
    terminal,
  ];
}

/** $1 saga id, $2 step name, $3 'confirmed' | 'compensated'. */
const MARK_STEP_SQL = (s: string) =>
  `UPDATE ${s}.saga_steps SET state = $3,
     compensated_at = CASE WHEN $3 = 'compensated' THEN now() ELSE compensated_at END
   WHERE saga_id = $1 AND name = $2`;

interface RawSaga {
  db_now: Date;
  id: string;
  name: string;
  key: string | null;
  input: unknown;
  state: SagaState;
  stuck_from: 'completing' | 'compensating' | null;
  output: unknown;
  error: string | null;
  fence: string;
  deadline: Date | null;
  runs: number;
  trace: Record<string, string> | null;
}

interface RawStep {
  name: string;
  kind: StepKind;
  ordinal: number;
  state: StepState;
  result: unknown;
  attempts: number;
  compensation_attempts: number;
  last_error: string | null;
  retry_at: Date | null;
  wait_until: Date | null;
  correlation_id: string | null;
}

function toSaga(r: RawSaga): SagaRow {
  return {
    dbNow: r.db_now,
    id: r.id,
    name: r.name,
    key: r.key,
    input: r.input,
    state: r.state,
    stuckFrom: r.stuck_from,
    output: r.output,
    error: r.error,
    fence: Number(r.fence),
    deadline: r.deadline,
    runs: r.runs,
    trace: r.trace,
  };
}

function toStep(r: RawStep): StepRow {
  return {
    name: r.name,
    kind: r.kind,
    ordinal: r.ordinal,
    state: r.state,
    result: r.result,
    attempts: r.attempts,
    compensationAttempts: r.compensation_attempts,
    lastError: r.last_error,
    retryAt: r.retry_at,
    waitUntil: r.wait_until,
    correlationId: r.correlation_id,
  };
}

function stepValues(sagaId: string, step: StepRecord): unknown[] {
  return [
    sagaId,
    step.name,
    step.kind,
    step.ordinal,
    step.state,
    step.result === undefined ? null : JSON.stringify(step.result),
    step.attempts ?? 0,
    step.compensationAttempts ?? 0,
    step.lastError ?? null,
    step.retryAt ?? null,
    step.waitUntil ?? null,
    step.correlationId ?? null,
  ];
}
