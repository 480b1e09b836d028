-- Baton messaging: outbox, relay state, inbox, subscriptions, version gates.
-- `:schema` is replaced by the quoted schema name; nothing else is substituted.

-- Per-key version counter. Publishing an event upserts its key's row, which
-- holds the row lock until commit: events of one key therefore commit in
-- version order, and version order is the order consumers must see.
CREATE TABLE :schema.stream_versions (
  stream_key text PRIMARY KEY,
  version bigint NOT NULL
);

-- Outbox rows wait here from the business commit until the relay sequences
-- them. `id` is the insertion position (never used as a delivery cursor: ids
-- of concurrent transactions commit out of order). `seq` is the feed
-- position, assigned by the single active relay in commit order.
CREATE TABLE :schema.outbox (
  id bigserial PRIMARY KEY,
  event_id uuid NOT NULL,
  type text NOT NULL,
  key text NOT NULL,
  version bigint NOT NULL,
  payload jsonb NOT NULL,
  headers jsonb NOT NULL,
  occurred_at timestamptz NOT NULL,
  source text NOT NULL,
  seq bigint,
  relayed_at timestamptz,
  dispatched_at timestamptz,
  CONSTRAINT outbox_state CHECK ((seq IS NULL) = (relayed_at IS NULL)),
  CONSTRAINT outbox_dispatch_after_relay CHECK (dispatched_at IS NULL OR seq IS NOT NULL)
);
CREATE INDEX outbox_unsequenced ON :schema.outbox (id) WHERE seq IS NULL;
CREATE UNIQUE INDEX outbox_seq ON :schema.outbox (seq) WHERE seq IS NOT NULL;

-- One row: the last feed position handed out, and the highest position pruned.
CREATE TABLE :schema.relay_state (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  last_seq bigint NOT NULL DEFAULT 0,
  pruned_through bigint NOT NULL DEFAULT 0,
  dispatched_through bigint NOT NULL DEFAULT 0
);
INSERT INTO :schema.relay_state DEFAULT VALUES;

-- A consumer's position in one source, committed with the inbox rows it covers.
CREATE TABLE :schema.subscriptions (
  name text PRIMARY KEY,
  source text NOT NULL,
  cursor text,
  types text[] NOT NULL DEFAULT '{}',
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Received events. States (see src/messaging/inbox-states.ts):
--   pending   waiting for its handler (or for its retry time)
--   handled   the handler's transaction committed
--   dead      attempts exhausted, or the input can never be handled
--   discarded an operator discarded the dead letter
CREATE TABLE :schema.inbox (
  id bigserial PRIMARY KEY,
  subscription text NOT NULL REFERENCES :schema.subscriptions (name),
  position text NOT NULL,
  event_id uuid,
  type text,
  key text NOT NULL,
  version bigint,
  payload jsonb,
  headers jsonb,
  occurred_at timestamptz,
  source text,
  raw text,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'handled', 'dead', 'discarded')),
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  received_at timestamptz NOT NULL DEFAULT now(),
  handled_at timestamptz
);
CREATE UNIQUE INDEX inbox_dedup ON :schema.inbox (subscription, event_id);
CREATE INDEX inbox_open ON :schema.inbox (subscription, key, id)
  WHERE status IN ('pending', 'dead');
CREATE INDEX inbox_ready ON :schema.inbox (subscription, id)
  WHERE status = 'pending';
CREATE INDEX inbox_handled ON :schema.inbox (handled_at) WHERE status = 'handled';

-- Max-version registers for state events: apply only what is newer.
CREATE TABLE :schema.version_gates (
  scope text NOT NULL,
  key text NOT NULL,
  version bigint NOT NULL,
  PRIMARY KEY (scope, key)
);
