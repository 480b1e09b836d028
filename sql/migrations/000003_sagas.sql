-- Baton sagas (orchestrator side) and the participant barrier.

-- Per-key arrival counter: `start` takes the key's row lock until commit, so
-- the key_seq order of one key is the commit order of its starts.
CREATE TABLE :schema.saga_keys (
  key text PRIMARY KEY,
  last_seq bigint NOT NULL
);

-- States (src/sagas/saga-states.ts):
--   running      forward execution (also while waiting: timer, retry backoff, reply)
--   completing   the saga function returned: confirming its reservations
--   compensating a step failed for good (or the deadline passed, or an operator aborted): undoing completed steps
--   completed    terminal: every step done, reservations confirmed
--   compensated  terminal: every completed step compensated
--   stuck        a compensation or confirm kept failing past its bound: waits for an operator
--                (`baton sagas retry`); `stuck_from` says which phase to resume
CREATE TABLE :schema.sagas (
  id text PRIMARY KEY,
  name text NOT NULL,
  key text,
  key_seq bigint,
  input jsonb NOT NULL,
  state text NOT NULL DEFAULT 'running'
    CHECK (state IN ('running', 'completing', 'compensating', 'completed', 'compensated', 'stuck')),
  stuck_from text CHECK (stuck_from IN ('completing', 'compensating')),
  output jsonb,
  error text,
  -- worker lease with a fencing token: every write of a worker names its token
  lease_owner text,
  lease_until timestamptz,
  fence bigint NOT NULL DEFAULT 0,
  wake_at timestamptz NOT NULL DEFAULT now(),
  deadline timestamptz,
  -- why it is not moving on (timer, retry of step x, waiting for a reply, …)
  waiting_for text,
  runs integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE INDEX sagas_ready ON :schema.sagas (wake_at) WHERE state IN ('running', 'completing', 'compensating');
CREATE INDEX sagas_by_key ON :schema.sagas (key, key_seq)
  WHERE state IN ('running', 'completing', 'compensating', 'stuck');

-- Steps. States: pending (attempted, will retry), completed, failed (for good),
--   compensated, confirmed (a reservation confirmed after success).
CREATE TABLE :schema.saga_steps (
  saga_id text NOT NULL REFERENCES :schema.sagas (id) ON DELETE CASCADE,
  name text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('local', 'call', 'reserve', 'command', 'sleep')),
  ordinal integer NOT NULL,
  state text NOT NULL CHECK (state IN ('pending', 'completed', 'failed', 'compensated', 'confirmed')),
  result jsonb,
  attempts integer NOT NULL DEFAULT 0,
  compensation_attempts integer NOT NULL DEFAULT 0,
  last_error text,
  retry_at timestamptz,
  -- sleep: when it ends; command: the correlation id of the awaited reply
  wait_until timestamptz,
  correlation_id text,
  started_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  compensated_at timestamptz,
  PRIMARY KEY (saga_id, name)
);
CREATE UNIQUE INDEX saga_steps_correlation ON :schema.saga_steps (correlation_id) WHERE correlation_id IS NOT NULL;

-- Participant side: the barrier. One row per (transaction, branch, operation),
-- inserted in the same transaction as the business change:
--   op 'try' with outcome 'done'     the try ran (result kept for duplicates)
--   op 'try' with outcome 'blocked'  a cancel came first: the try never runs (anti-hanging)
--   op 'confirm' / 'cancel'          ran once; duplicates are no-ops
--   op 'cancel' with outcome 'null'  cancel before try: nothing to undo (null compensation)
CREATE TABLE :schema.barrier (
  tx_id text NOT NULL,
  branch text NOT NULL,
  op text NOT NULL CHECK (op IN ('try', 'confirm', 'cancel')),
  resource text NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('done', 'blocked', 'null')),
  result jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tx_id, branch, op)
);
CREATE INDEX barrier_age ON :schema.barrier (created_at);

-- Participant side: idempotent actions (remote saga steps). The result of the
-- first execution is returned for every repeat of the same key.
CREATE TABLE :schema.idempotency_keys (
  key text PRIMARY KEY,
  action text NOT NULL,
  result jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_age ON :schema.idempotency_keys (created_at);
