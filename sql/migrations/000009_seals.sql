-- Seals: every row Baton writes in the tables that decide what it does next
-- carries a hash of the columns that decide it, computed by Baton's own
-- statement (never by a trigger). A row changed by anything else — SQL by
-- hand, with triggers on or off, a restore that mixes backups — no longer
-- matches its seal, and the caretaker reports it (src/caretaker/integrity.ts),
-- restoring what it can: a status, a state or an outcome whose original the
-- seal identifies among the few values the column can take. A seal is not a
-- signature: whoever can write these tables can recompute it; it guards
-- against mistakes, not against someone with the database's password.

CREATE FUNCTION :schema.seal(VARIADIC parts text[]) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT hashtextextended(array_to_json(parts)::text, 7)
$$;

CREATE FUNCTION :schema.outbox_seal(event_id uuid, type text, key text, version bigint,
  payload jsonb, headers jsonb, source text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT :schema.seal('outbox', event_id::text, type, key, version::text, payload::text, headers::text, source)
$$;

CREATE FUNCTION :schema.counter_seal(stream_key text, version bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT :schema.seal('counter', stream_key, version::text)
$$;

CREATE FUNCTION :schema.inbox_seal(subscription text, event_id uuid, type text, key text,
  version bigint, payload jsonb, headers jsonb, status text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT :schema.seal('inbox', subscription, event_id::text, type, key, version::text, payload::text,
                      headers::text, status)
$$;

CREATE FUNCTION :schema.cursor_seal(name text, cursor text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT :schema.seal('cursor', name, cursor)
$$;

CREATE FUNCTION :schema.gate_seal(scope text, key text, version bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT :schema.seal('gate', scope, key, version::text)
$$;

CREATE FUNCTION :schema.barrier_seal(tx_id text, branch text, op text, resource text,
  outcome text, result jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT :schema.seal('barrier', tx_id, branch, op, resource, outcome, result::text)
$$;

CREATE FUNCTION :schema.idempotency_seal(key text, action text, state text, result jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT :schema.seal('idempotency', key, action, state, result::text)
$$;

-- An entity's latest version, in its versions table (created by install(), sealed there).
CREATE FUNCTION :schema.entity_version_seal(entity text, id text, version bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT :schema.seal('entity-version', entity, id, version::text)
$$;

-- Versions a key's counter passed over on purpose: an entity announced above a
-- replica's version, a counter set right at least to what it had issued. The
-- caretaker's check that a key's events run without a gap leaves them out.
CREATE TABLE :schema.version_skips (
  key text NOT NULL,
  from_version bigint NOT NULL,
  to_version bigint NOT NULL CHECK (to_version >= from_version),
  reason text NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (key, from_version)
);

ALTER TABLE :schema.outbox ADD COLUMN seal bigint;
UPDATE :schema.outbox SET seal = :schema.outbox_seal(event_id, type, key, version, payload, headers, source);
ALTER TABLE :schema.stream_versions ADD COLUMN seal bigint;
UPDATE :schema.stream_versions SET seal = :schema.counter_seal(stream_key, version);
ALTER TABLE :schema.inbox ADD COLUMN seal bigint;
UPDATE :schema.inbox SET seal = :schema.inbox_seal(subscription, event_id, type, key, version, payload, headers, status);
ALTER TABLE :schema.subscriptions ADD COLUMN seal bigint;
UPDATE :schema.subscriptions SET seal = :schema.cursor_seal(name, cursor);
ALTER TABLE :schema.version_gates ADD COLUMN seal bigint;
UPDATE :schema.version_gates SET seal = :schema.gate_seal(scope, key, version);
ALTER TABLE :schema.barrier ADD COLUMN seal bigint;
UPDATE :schema.barrier SET seal = :schema.barrier_seal(tx_id, branch, op, resource, outcome, result);
ALTER TABLE :schema.idempotency_keys ADD COLUMN seal bigint;
UPDATE :schema.idempotency_keys SET seal = :schema.idempotency_seal(key, action, state, result);

-- The entity state event, sealed like publish()'s events (replaces 000007's).
CREATE OR REPLACE FUNCTION :schema.emit_entity_event(p_entity text, p_id text, p_state text, p_fields jsonb, p_personal text[])
RETURNS bigint LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_version bigint;
  v_key text := p_entity || ':' || p_id;
  v_type text := 'baton.entity.' || p_entity;
  v_id uuid := :schema.uuid_v7();
  v_source text := coalesce((SELECT value FROM :schema.settings WHERE name = 'service'), 'unknown');
  v_payload jsonb := jsonb_build_object('entity', p_entity, 'id', p_id, 'state', p_state,
                                        'fields', p_fields, 'personal', to_jsonb(p_personal));
  v_bytes int := octet_length(v_payload::text);
  v_limit int := coalesce((SELECT value::int FROM :schema.settings WHERE name = 'max_payload_bytes'), 262144);
BEGIN
  -- Keys are at most 512 characters on the wire; a longer one would be refused by every consumer.
  IF length(v_key) > 512 THEN
    RAISE EXCEPTION 'baton: % id of % characters is too long: an entity''s id and name must fit in 511 characters',
      p_entity, length(p_id)
      USING ERRCODE = 'BR005';
  END IF;
  -- The same limit as publish (maxPayloadBytes): an oversized state event
  -- would otherwise be refused by every consumer, far from its cause.
  IF v_bytes > v_limit THEN
    RAISE EXCEPTION 'baton: % %: its state event would be % bytes, over the limit of % (maxPayloadBytes); copy fewer or smaller fields',
      p_entity, left(p_id, 100), v_bytes, v_limit
      USING ERRCODE = 'BR004';
  END IF;
  INSERT INTO :schema.stream_versions AS sv (stream_key, version, seal)
  VALUES (v_key, 1, :schema.counter_seal(v_key, 1))
  ON CONFLICT (stream_key) DO UPDATE
    SET version = sv.version + 1, seal = :schema.counter_seal(sv.stream_key, sv.version + 1)
  RETURNING version INTO v_version;
  INSERT INTO :schema.outbox (event_id, type, key, version, payload, headers, occurred_at, source, seal)
  VALUES (v_id, v_type, v_key, v_version, v_payload, '{}'::jsonb, now(), v_source,
          :schema.outbox_seal(v_id, v_type, v_key, v_version, v_payload, '{}'::jsonb, v_source));
  PERFORM pg_notify(value, '') FROM :schema.settings WHERE name = 'outbox_channel';
  RETURN v_version;
END $$;

-- The function an entity's capture trigger called before install() wrote one
-- per entity: unchanged (its own counter), but sealed, for rows written
-- between an upgrade's migrate() and its install().
CREATE OR REPLACE FUNCTION :schema.emit_entity_state(p_entity text, p_id text, p_state text, p_fields jsonb, p_personal text[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_version bigint;
  v_key text := p_entity || ':' || p_id;
  v_stream text := 'baton.entity:' || p_entity || ':' || p_id;
  v_type text := 'baton.entity.' || p_entity;
  v_id uuid := :schema.uuid_v7();
  v_source text := coalesce((SELECT value FROM :schema.settings WHERE name = 'service'), 'unknown');
  v_payload jsonb := jsonb_build_object('entity', p_entity, 'id', p_id, 'state', p_state,
                                        'fields', p_fields, 'personal', to_jsonb(p_personal));
BEGIN
  INSERT INTO :schema.stream_versions AS sv (stream_key, version, seal)
  VALUES (v_stream, 1, :schema.counter_seal(v_stream, 1))
  ON CONFLICT (stream_key) DO UPDATE
    SET version = sv.version + 1, seal = :schema.counter_seal(sv.stream_key, sv.version + 1)
  RETURNING version INTO v_version;
  INSERT INTO :schema.outbox (event_id, type, key, version, payload, headers, occurred_at, source, seal)
  VALUES (v_id, v_type, v_key, v_version, v_payload, '{}'::jsonb, now(), v_source,
          :schema.outbox_seal(v_id, v_type, v_key, v_version, v_payload, '{}'::jsonb, v_source));
  PERFORM pg_notify(value, '') FROM :schema.settings WHERE name = 'outbox_channel';
  RETURN v_version;
END $$;
