-- Baton references: entities (owner side), replicas and references (referrer
-- side), the restrict delete protocol, and the caretaker's records.

-- Settings the SQL side needs (service name, NOTIFY channel), written by Baton at start-up.
CREATE TABLE :schema.settings (
  name text PRIMARY KEY,
  value text NOT NULL
);

-- A UUIDv7 from SQL (PostgreSQL < 18 has no uuidv7()): 48-bit Unix ms, version 7, random rest.
CREATE FUNCTION :schema.uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
        PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6),
      52, 1), 53, 1), 'hex')::uuid
$$;

-- ── owner side ───────────────────────────────────────────────────────
-- Entities this service owns and announces.
CREATE TABLE :schema.entities (
  name text PRIMARY KEY,
  table_name text NOT NULL,
  key_column text NOT NULL,
  fields text[] NOT NULL,
  personal text[] NOT NULL,
  -- services that hold `restrict` references: deletes go through fence → drain → finalise
  restrict_referrers text[] NOT NULL DEFAULT '{}'
);

-- The last word on a deleted entity: its final version and copied fields.
CREATE TABLE :schema.tombstones (
  entity text NOT NULL,
  id text NOT NULL,
  version bigint NOT NULL,
  fields jsonb NOT NULL,
  deleted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (entity, id)
);

-- Coordinated deletes (restrict). States (src/references/delete-states.ts):
--   pending    fence announced (entity DELETING), waiting for every referrer's vote
--   finalizing all prepared: the owner's row is being deleted (the capture trigger allows it)
--   done       deleted; the tombstone went out
--   refused    a referrer vetoed: the entity is ACTIVE again; `reason` says why
CREATE TABLE :schema.delete_fences (
  entity text NOT NULL,
  id text NOT NULL,
  state text NOT NULL CHECK (state IN ('pending', 'finalizing', 'done', 'refused')),
  version bigint NOT NULL,
  reason text,
  requested_at timestamptz NOT NULL DEFAULT now(),
  decided_at timestamptz,
  PRIMARY KEY (entity, id)
);

CREATE TABLE :schema.delete_votes (
  entity text NOT NULL,
  id text NOT NULL,
  version bigint NOT NULL,
  referrer text NOT NULL,
  vote text NOT NULL CHECK (vote IN ('prepared', 'vetoed')),
  reference_count bigint NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (entity, id, version, referrer)
);

-- Writes one entity state event into the outbox (same statement shape as
-- publish: the key's counter row is locked until commit).
CREATE FUNCTION :schema.emit_entity_state(p_entity text, p_id text, p_state text, p_fields jsonb, p_personal text[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_version bigint;
  -- The event's key is `<entity>:<id>` (what consumers order by); its version
  -- counter is a stream of its own, `baton.entity:<entity>:<id>`, so events a
  -- service publishes itself under the same key do not bump the entity's
  -- version (which replicas, lookups and the caretaker compare).
  v_key text := p_entity || ':' || p_id;
  v_stream text := 'baton.entity:' || p_entity || ':' || p_id;
  v_payload jsonb := jsonb_build_object('entity', p_entity, 'id', p_id, 'state', p_state,
                                        'fields', p_fields, 'personal', to_jsonb(p_personal));
  v_bytes int := octet_length(v_payload::text);
  v_limit int := coalesce((SELECT value::int FROM :schema.settings WHERE name = 'max_payload_bytes'), 262144);
BEGIN
  -- The same limit as publish (maxPayloadBytes): an oversized state event
  -- would otherwise be refused by every consumer, far from its cause.
  IF v_bytes > v_limit THEN
    RAISE EXCEPTION 'baton: % %: its state event would be % bytes, over the limit of % (maxPayloadBytes); copy fewer or smaller fields',
      p_entity, left(p_id, 100), v_bytes, v_limit
      USING ERRCODE = 'BR004';
  END IF;
  INSERT INTO :schema.stream_versions AS sv (stream_key, version) VALUES (v_stream, 1)
  ON CONFLICT (stream_key) DO UPDATE SET version = sv.version + 1
  RETURNING version INTO v_version;
  INSERT INTO :schema.outbox (event_id, type, key, version, payload, headers, occurred_at, source)
  VALUES (:schema.uuid_v7(), 'baton.entity.' || p_entity, v_key, v_version, v_payload,
          '{}'::jsonb, now(),
          coalesce((SELECT value FROM :schema.settings WHERE name = 'service'), 'unknown'));
  PERFORM pg_notify(value, '') FROM :schema.settings WHERE name = 'outbox_channel';
  RETURN v_version;
END $$;

-- Row trigger on an entity's table: every insert, update and delete — also
-- plain SQL outside Baton — emits the entity's state in the same transaction.
-- TG_ARGV: entity name.
CREATE FUNCTION :schema.capture_entity() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_entity text := TG_ARGV[0];
  e :schema.entities%ROWTYPE;
  v_new jsonb;
  v_old jsonb;
  v_fields_new jsonb;
  v_fields_old jsonb;
  v_state text;
BEGIN
  SELECT * INTO e FROM :schema.entities WHERE name = v_entity;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'baton: entity "%" is not declared (trigger on %)', v_entity, TG_TABLE_NAME;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    v_new := to_jsonb(NEW);
    SELECT coalesce(jsonb_object_agg(f, v_new -> f), '{}'::jsonb) INTO v_fields_new FROM unnest(e.fields) f;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    v_old := to_jsonb(OLD);
    SELECT coalesce(jsonb_object_agg(f, v_old -> f), '{}'::jsonb) INTO v_fields_old FROM unnest(e.fields) f;
  END IF;

  IF TG_OP = 'UPDATE' AND (v_new ->> e.key_column) IS NOT DISTINCT FROM (v_old ->> e.key_column) THEN
    IF v_fields_new IS NOT DISTINCT FROM v_fields_old THEN
      RETURN NULL; -- nothing others copy has changed
    END IF;
  END IF;

  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND (v_new ->> e.key_column) IS DISTINCT FROM (v_old ->> e.key_column)) THEN
    -- A key change is the delete of the old id and the insert of the new one.
    PERFORM :schema.entity_deleted(e, v_old ->> e.key_column, v_fields_old);
    IF TG_OP = 'DELETE' THEN RETURN NULL; END IF;
  END IF;

  DELETE FROM :schema.tombstones WHERE entity = v_entity AND id = v_new ->> e.key_column;
  SELECT CASE WHEN state = 'pending' THEN 'deleting' ELSE 'active' END INTO v_state
  FROM :schema.delete_fences WHERE entity = v_entity AND id = v_new ->> e.key_column;
  PERFORM :schema.emit_entity_state(v_entity, v_new ->> e.key_column, coalesce(v_state, 'active'),
                                    v_fields_new, e.personal);
  RETURN NULL;
END $$;

-- Statement trigger on an entity's table: TRUNCATE fires no row triggers, so
-- it would remove entities with no state events and no tombstones, leaving
-- every replica ACTIVE. Refused. TG_ARGV: entity name.
CREATE FUNCTION :schema.refuse_entity_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'baton: TRUNCATE of % would remove % entities without state events or tombstones; use DELETE FROM % instead',
    TG_TABLE_NAME, TG_ARGV[0], TG_TABLE_NAME
    USING ERRCODE = 'BR003';
END $$;

CREATE FUNCTION :schema.entity_deleted(e :schema.entities, p_id text, p_fields jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_version bigint;
BEGIN
  IF cardinality(e.restrict_referrers) > 0 AND NOT EXISTS (
    SELECT 1 FROM :schema.delete_fences WHERE entity = e.name AND id = p_id AND state = 'finalizing'
  ) THEN
    RAISE EXCEPTION 'baton: % % has restrict references in %; delete it with requestDelete(), which asks them first',
      e.name, p_id, array_to_string(e.restrict_referrers, ', ')
      USING ERRCODE = 'BR002';
  END IF;
  v_version := :schema.emit_entity_state(e.name, p_id, 'deleted', p_fields, e.personal);
  INSERT INTO :schema.tombstones (entity, id, version, fields) VALUES (e.name, p_id, v_version, p_fields)
  ON CONFLICT (entity, id) DO UPDATE SET version = excluded.version, fields = excluded.fields, deleted_at = now();
END $$;

-- ── referrer side ────────────────────────────────────────────────────
-- Replica tables (one per referenced entity, created by Baton, named replica_<entity>):
--   id (the referencing column's type) PRIMARY KEY, state, version, fields, personal, updated_at.
-- States (src/references/replica-states.ts): ACTIVE, UNVERIFIED (accepted while the
-- owner was unreachable), DELETING (restrict fence), DELETED (tombstone; keeps the snapshot).
CREATE TABLE :schema.replicas (
  entity text PRIMARY KEY,
  table_name text NOT NULL,
  id_type text NOT NULL,
  owner text NOT NULL,
  -- the owner's Baton endpoints (not secret; credentials come from the environment)
  owner_url text NOT NULL,
  -- the subscription that carries the owner's state events
  subscription text NOT NULL
);

CREATE TABLE :schema.entity_references (
  name text PRIMARY KEY,
  table_name text NOT NULL,
  column_name text NOT NULL,
  entity text NOT NULL REFERENCES :schema.replicas (entity),
  on_delete text NOT NULL CHECK (on_delete IN ('cascade', 'restrict', 'set-null', 'keep', 'anonymise')),
  snapshot_columns jsonb NOT NULL DEFAULT '{}'
);

-- Every policy action taken on referencing rows. `apology` marks actions on
-- references Baton had accepted without being able to verify them, or that the
-- caretaker found (something slipped through).
CREATE TABLE :schema.policy_actions (
  id bigserial PRIMARY KEY,
  reference text NOT NULL,
  entity text NOT NULL,
  entity_id text NOT NULL,
  policy text NOT NULL,
  affected bigint NOT NULL,
  apology boolean NOT NULL,
  reason text NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);

-- ── caretaker ────────────────────────────────────────────────────────
-- Suspected true orphans: replica rows the owner has never heard of.
CREATE TABLE :schema.quarantine (
  entity text NOT NULL,
  id text NOT NULL,
  confirmations int NOT NULL DEFAULT 1,
  approved boolean NOT NULL DEFAULT false,
  first_seen timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (entity, id)
);

CREATE TABLE :schema.reconcile_runs (
  id bigserial PRIMARY KEY,
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT now(),
  repair boolean NOT NULL,
  report jsonb NOT NULL
);
