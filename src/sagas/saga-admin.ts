import { BatonError, InvalidInputError, NotFoundError } from '../core/errors.ts';
import type { Database, Executor } from '../db/executor.ts';
import { queryPrepared } from '../db/prepared.ts';
import { schemaIdent } from '../db/sql.ts';
import {
  canTransition,
  SAGA_STATES,
  type SagaState,
  type StepKind,
  type StepState,
} from './saga-states.ts';

/**
 * The operator's view of sagas, without the saga definitions (the CLI runs
 * in no service's process): list, show, retry a stuck saga, abort one.
 *
 *   stuck ──retry──► stuck_from (completing | compensating)
 *       the step marks' compensation attempts reset to 0, due now
 *   running ──abort──► compensating        the completed steps are undone in reverse
 *   stuck (from compensating) ──abort──► compensating   as retry, with the reason recorded
 *
 * Abort is refused in `completing` (and for a saga stuck while completing):
 * the saga function returned, so every forward step is done and its
 * reservations are being confirmed; a confirm cannot be taken back by a
 * cancel (the barrier lets a cancel after a confirm run, and the cancel of a
 * confirmed hold does not give the points back), so the confirms must finish —
 * fix the participant and `retry`.
 *
 * Retry and abort take the saga's row lock, bump its fencing token and clear
 * its lease: a worker still running it gets `LeaseLostError` on its next
 * write and stops, and the next free worker picks the saga up at once.
 */

export interface SagaAdminOptions {
  /** Schema holding Baton's tables. Default `baton`. */
  schema?: string;
}

/** One line of `baton sagas list`. */
export interface SagaSummary {
  id: string;
  name: string;
  key: string | null;
  state: SagaState;
  /** For a stuck saga: the phase `retry` resumes. */
  stuckFrom: 'completing' | 'compensating' | null;
  error: string | null;
  /** Why a running saga is not moving on now (timer, retry of a step, a reply). */
  waitingFor: string | null;
  /** How many times a worker has claimed it. */
  runs: number;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export interface SagaStepDetail {
  name: string;
  kind: StepKind;
  ordinal: number;
  state: StepState;
  attempts: number;
  compensationAttempts: number;
  lastError: string | null;
  /** When a pending step is tried again. */
  retryAt: string | null;
  /** Timer end, or the reply deadline of a command. */
  waitUntil: string | null;
  correlationId: string | null;
  result: unknown;
  startedAt: string;
  completedAt: string | null;
  compensatedAt: string | null;
}

/** Everything stored about one saga (`baton sagas show`). */
export interface SagaDetail extends SagaSummary {
  input: unknown;
  output: unknown;
  keySeq: number | null;
  /** The worker holding it now (null when none, or the lease ran out). */
  leaseOwner: string | null;
  leaseUntil: string | null;
  fence: number;
  wakeAt: string;
  deadline: string | null;
  steps: SagaStepDetail[];
}

export interface SagaList {
  sagas: SagaSummary[];
  /** Sagas matching the filter (the list stops at `limit`). */
  total: number;
}

/** What `retrySaga` / `abortSaga` did. */
export interface SagaChange {
  id: string;
  from: SagaState;
  to: SagaState;
  /** Steps whose compensation attempts were reset. */
  stepsReset: string[];
  /** The fencing token after the change (a worker holding an older one can no longer write). */
  fence: number;
}

/** Migration 3 (sagas) is not applied in this schema. */
export class SagasNotInstalledError extends BatonError {
  constructor(readonly schema: string) {
    super(
      'BATON_SAGAS_NOT_INSTALLED',
      `the saga tables are not in schema "${schema}" of this database (migration 3 is not applied): run \`baton migrate\` with the same database URL and --schema.`,
    );
  }
}

/** The saga is in a state the operation does not apply to; the message says what to do instead. */
export class SagaStateError extends BatonError {
  constructor(
    readonly sagaId: string,
    readonly state: SagaState,
    message: string,
  ) {
    super('BATON_SAGA_STATE', message);
  }
}

const DEFAULT_LIST_LIMIT = 50;

/** Sagas, newest first, optionally of one state and/or name. Read-only. */
export async function listSagas(
  db: Executor,
  options: SagaAdminOptions & {
    state?: string;
    name?: string;
    limit?: number;
    /** The next page: sagas created before this one (the last id of the page before). */
    before?: string;
  } = {},
): Promise<SagaList> {
  const s = await sagaSchema(db, options);
  const limit = options.limit ?? DEFAULT_LIST_LIMIT;
  if (!(Number.isInteger(limit) && limit >= 1)) {
    throw new InvalidInputError(`limit must be a positive integer (got ${String(limit)}).`);
  }
  if (options.state !== undefined && !isSagaState(options.state)) {
    throw new InvalidInputError(
      `unknown saga state "${options.state}": use one of ${SAGA_STATES.join(', ')}.`,
    );
  }
  const filter = '($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR name = $2)';
  // One statement: the page and the total come from the same snapshot. Each
  // is one range of an index (sagas_newest, sagas_by_state), whatever the page.
  const r = await db.query<SagaRowRaw & { total: string }>(
    `SELECT ${SUMMARY_COLUMNS}, (SELECT count(*) FROM ${s}.sagas WHERE ${filter}) AS total
       FROM ${s}.sagas
      WHERE ${filter}
        AND ($4::text IS NULL OR (created_at, id) < (SELECT created_at, id FROM ${s}.sagas WHERE id = $4))
      ORDER BY created_at DESC, id DESC LIMIT $3`,
    [options.state ?? null, options.name ?? null, limit, options.before ?? null],
  );
  return { sagas: r.rows.map(toSummary), total: Number(r.rows[0]?.total ?? 0) };
}

/** One saga with its steps (in step order). `NotFoundError` for an unknown id. */
export async function showSaga(
  db: Executor,
  id: string,
  options: SagaAdminOptions = {},
): Promise<SagaDetail> {
  return readSagaDetail(db, await sagaSchema(db, options), id);
}

/**
 * A saga and its steps as callers and operators see them — the one mapping
 * of a saga row to the outside (`sagas.status`, `waitFor`, `baton sagas
 * show`); workers read their own `SagaRow` (saga-store.ts).
 */
export async function readSagaDetail(db: Executor, s: string, id: string): Promise<SagaDetail> {
  // One statement: the saga and its steps (waitFor reads it once more after every settle),
  // prepared: its text is fixed per schema, and it is on the path of every waitFor.
  const r = await queryPrepared<DetailRowRaw & { steps: StepJson[] }>(
    db,
    `SELECT ${SUMMARY_COLUMNS}, input, output, key_seq, fence,
       CASE WHEN lease_until > now() THEN lease_owner END AS lease_owner,
       CASE WHEN lease_until > now() THEN lease_until END AS lease_until,
       wake_at, deadline,
       (SELECT coalesce(json_agg(json_build_object(
           'name', st.name, 'kind', st.kind, 'ordinal', st.ordinal, 'state', st.state,
           'attempts', st.attempts, 'compensationAttempts', st.compensation_attempts,
           'lastError', st.last_error, 'retryAt', ${msSql('st.retry_at')},
           'waitUntil', ${msSql('st.wait_until')}, 'correlationId', st.correlation_id,
           'result', st.result, 'startedAt', ${msSql('st.started_at')},
           'completedAt', ${msSql('st.completed_at')}, 'compensatedAt', ${msSql('st.compensated_at')})
         ORDER BY st.ordinal, st.started_at), '[]'::json)
        FROM ${s}.saga_steps st WHERE st.saga_id = ${s}.sagas.id) AS steps
     FROM ${s}.sagas WHERE id = $1`,
    [id],
  );
  const row = r.rows[0];
  if (!row) throw notFound(id);
  return {
    ...toSummary(row),
    input: row.input,
    output: row.output,
    keySeq: row.key_seq === null ? null : Number(row.key_seq),
    leaseOwner: row.lease_owner,
    leaseUntil: iso(row.lease_until),
    fence: Number(row.fence),
    wakeAt: row.wake_at.toISOString(),
    deadline: iso(row.deadline),
    steps: row.steps.map((step) => ({
      ...step,
      retryAt: isoOfMs(step.retryAt),
      waitUntil: isoOfMs(step.waitUntil),
      startedAt: isoOfMs(step.startedAt) as string,
      completedAt: isoOfMs(step.completedAt),
      compensatedAt: isoOfMs(step.compensatedAt),
    })),
  };
}

/** A step as the detail query builds it: its times as milliseconds since the epoch. */
type StepJson = Omit<
  SagaStepDetail,
  'retryAt' | 'waitUntil' | 'startedAt' | 'completedAt' | 'compensatedAt'
> &
  Record<'retryAt' | 'waitUntil' | 'startedAt' | 'completedAt' | 'compensatedAt', number | null>;

/**
 * SQL: a timestamptz as milliseconds since the epoch, floored (as
 * node-postgres truncates to a `Date`), or NULL; JavaScript writes the ISO
 * form, so every year reads as it did (`to_char` would write year 10000 in a
 * form `Date` cannot parse back).
 */
function msSql(column: string): string {
  return `floor(extract(epoch FROM ${column}) * 1000)`;
}

function isoOfMs(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * Resumes a stuck saga where it got stuck (`stuck_from`): its steps'
 * compensation attempts start again from 0, and it is due at once.
 * Only for `stuck`; fix the cause (the participant, the compensation) first.
 */
export async function retrySaga(
  db: Database,
  id: string,
  options: SagaAdminOptions = {},
): Promise<SagaChange> {
  const s = await sagaSchema(db, options);
  return db.transaction(async (tx) => {
    const saga = await lock(tx, s, id);
    if (saga.state !== 'stuck' || saga.stuck_from === null) {
      throw new SagaStateError(id, saga.state, `cannot retry saga ${id}: ${whyNot(saga, 'retry')}`);
    }
    return resume(tx, s, saga, saga.stuck_from, {
      waitingFor: `resumed by an operator (retry of ${saga.stuck_from === 'completing' ? 'confirms' : 'compensations'})`,
    });
  });
}

/**
 * Gives a saga up: it compensates its completed steps in reverse (reservations
 * are cancelled). For `running`, and for `stuck` while compensating (then as
 * `retry`, with the reason recorded). Refused in `completing` and for a saga
 * stuck while completing: its confirms must finish (see the file comment).
 */
export async function abortSaga(
  db: Database,
  id: string,
  reason: string,
  options: SagaAdminOptions = {},
): Promise<SagaChange> {
  if (typeof reason !== 'string' || reason.trim() === '') {
    throw new InvalidInputError('abort needs a reason (it is recorded as the saga error).');
  }
  const s = await sagaSchema(db, options);
  return db.transaction(async (tx) => {
    const saga = await lock(tx, s, id);
    const abortable =
      saga.state === 'running' || (saga.state === 'stuck' && saga.stuck_from === 'compensating');
    if (!abortable) {
      throw new SagaStateError(id, saga.state, `cannot abort saga ${id}: ${whyNot(saga, 'abort')}`);
    }
    const error = `aborted by an operator: ${reason.trim()}${saga.state === 'stuck' && saga.error ? ` (was stuck: ${saga.error})` : ''}`;
    return resume(tx, s, saga, 'compensating', { error, waitingFor: 'aborted by an operator' });
  });
}

/** Moves a locked saga to `to`: fence bumped, lease cleared, due now, compensation attempts reset. */
async function resume(
  tx: Executor,
  s: string,
  saga: LockedRaw,
  to: 'completing' | 'compensating',
  fields: { error?: string; waitingFor: string },
): Promise<SagaChange> {
  if (!canTransition(saga.state, to)) {
    throw new SagaStateError(
      saga.id,
      saga.state,
      `saga ${saga.id} cannot go from ${saga.state} to ${to}.`,
    );
  }
  const updated = await tx.query<{ fence: string }>(
    `UPDATE ${s}.sagas SET state = $2, stuck_from = NULL,
       error = CASE WHEN $3::text IS NULL THEN error ELSE $3 END,
       waiting_for = $4, wake_at = now(), fence = fence + 1,
       lease_owner = NULL, lease_until = NULL, updated_at = now()
     WHERE id = $1 RETURNING fence`,
    [saga.id, to, fields.error ?? null, fields.waitingFor],
  );
  const reset = await tx.query<{ name: string }>(
    `UPDATE ${s}.saga_steps SET compensation_attempts = 0
     WHERE saga_id = $1 AND compensation_attempts > 0 AND state NOT IN ('compensated', 'confirmed')
     RETURNING name`,
    [saga.id],
  );
  return {
    id: saga.id,
    from: saga.state,
    to,
    stepsReset: reset.rows.map((r) => r.name).sort(),
    fence: Number(updated.rows[0]?.fence ?? saga.fence),
  };
}

/** Saga tables installed? (The status and the CLI work on databases without migration 3.) */
export async function sagasInstalled(db: Executor, schema = 'baton'): Promise<boolean> {
  const s = schemaIdent(schema);
  const r = await db.query<{ ok: boolean }>(
    `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AS ok`,
    [`${s}.sagas`, `${s}.saga_steps`],
  );
  return r.rows[0]?.ok === true;
}

export function isSagaState(value: string): value is SagaState {
  return (SAGA_STATES as readonly string[]).includes(value);
}

async function sagaSchema(db: Executor, options: SagaAdminOptions): Promise<string> {
  const schema = options.schema ?? 'baton';
  const s = schemaIdent(schema);
  if (!(await sagasInstalled(db, schema))) throw new SagasNotInstalledError(schema);
  return s;
}

interface LockedRaw {
  id: string;
  state: SagaState;
  stuck_from: 'completing' | 'compensating' | null;
  error: string | null;
  fence: string;
}

async function lock(tx: Executor, s: string, id: string): Promise<LockedRaw> {
  const r = await tx.query<LockedRaw>(
    `SELECT id, state, stuck_from, error, fence FROM ${s}.sagas WHERE id = $1 FOR UPDATE`,
    [id],
  );
  const row = r.rows[0];
  if (!row) throw notFound(id);
  return row;
}

/** Why `action` does not apply to this saga, and what the operator can do instead. */
function whyNot(saga: LockedRaw, action: 'retry' | 'abort'): string {
  switch (saga.state) {
    case 'completed':
      return 'it is completed (every step done, its reservations confirmed); nothing is left to do.';
    case 'compensated':
      return 'it is compensated (every completed step was undone); nothing is left to do.';
    case 'compensating':
      return action === 'retry'
        ? 'it is compensating, not stuck: a worker undoes its steps (see `baton sagas show` for attempts and errors).'
        : 'it is already compensating: a worker undoes its steps (see `baton sagas show`).';
    case 'completing':
      return action === 'retry'
        ? 'it is completing, not stuck: a worker confirms its reservations (see `baton sagas show`).'
        : 'it is completing: its function returned and its reservations are being confirmed; a confirm cannot be undone, so the confirms must finish. If they keep failing it becomes stuck: fix the participant, then `baton sagas retry`.';
    case 'running':
      return 'it is running, not stuck (a worker moves it on; `baton sagas show` says what it waits for). To give it up, `baton sagas abort`.';
    case 'stuck':
      return saga.stuck_from === 'completing'
        ? 'it is stuck while confirming its reservations; confirmed reservations cannot be cancelled, so it cannot be aborted. Fix the participant, then `baton sagas retry`.'
        : 'it is stuck with no phase to resume recorded (stuck_from is empty); inspect it with `baton sagas show`.';
  }
}

function notFound(id: string): NotFoundError {
  return new NotFoundError(
    `no saga with id ${JSON.stringify(id)} in this database: check the id (\`baton sagas list\`) and the --database-url / --schema.`,
  );
}

const SUMMARY_COLUMNS = `id, name, key, state, stuck_from, error, waiting_for, runs, created_at, updated_at, finished_at`;

interface SagaRowRaw {
  id: string;
  name: string;
  key: string | null;
  state: SagaState;
  stuck_from: 'completing' | 'compensating' | null;
  error: string | null;
  waiting_for: string | null;
  runs: number;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

interface DetailRowRaw extends SagaRowRaw {
  input: unknown;
  output: unknown;
  key_seq: string | null;
  fence: string;
  lease_owner: string | null;
  lease_until: Date | null;
  wake_at: Date;
  deadline: Date | null;
}

function toSummary(r: SagaRowRaw): SagaSummary {
  return {
    id: r.id,
    name: r.name,
    key: r.key,
    state: r.state,
    stuckFrom: r.stuck_from,
    error: r.error,
    waitingFor: r.waiting_for,
    runs: r.runs,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    finishedAt: iso(r.finished_at),
  };
}

function iso(value: Date | null): string | null {
  return value === null ? null : value.toISOString();
}
