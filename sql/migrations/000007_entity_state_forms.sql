-- Entities, round two (see src/references/entity-capture.ts):
--
-- * One version counter per event key, whatever writes the event. An
--   entity's state events are keyed `<entity>:<id>` and now count on that
--   key's own row of stream_versions, the row publish() locks for the same
--   key: a service's own events about the entity and its state events are
--   numbered — and committed, and relayed — in one order. (They counted
--   apart before, on `baton.entity:<entity>:<id>`, and could be relayed
--   against commit order.) The version of an entity's latest state event is
--   kept per entity in a table of the key's own type, created by install().
-- * Every value is captured in a form that does not depend on the writer's
--   session (see PINNED_SETTINGS in src/references/state-form.ts).
-- * The caretaker's value form (member_text) no longer formats numbers, so
--   the hash a replica row stores is the same whatever session wrote it.

-- Writes one entity state event into the outbox, numbered on its key's
-- counter (locked until commit, as publish() does). Returns its version.
CREATE FUNCTION :schema.emit_entity_event(p_entity text, p_id text, p_state text, p_fields jsonb, p_personal text[])
RETURNS bigint LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_version bigint;
  v_key text := p_entity || ':' || p_id;
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
  INSERT INTO :schema.stream_versions AS sv (stream_key, version) VALUES (v_key, 1)
  ON CONFLICT (stream_key) DO UPDATE SET version = sv.version + 1
  RETURNING version INTO v_version;
  INSERT INTO :schema.outbox (event_id, type, key, version, payload, headers, occurred_at, source)
  VALUES (:schema.uuid_v7(), 'baton.entity.' || p_entity, v_key, v_version, v_payload,
          '{}'::jsonb, now(),
          coalesce((SELECT value FROM :schema.settings WHERE name = 'service'), 'unknown'));
  PERFORM pg_notify(value, '') FROM :schema.settings WHERE name = 'outbox_channel';
  RETURN v_version;
END $$;

-- Refuses the delete of an entity that has restrict referrers unless the
-- coordinated delete is finalising it (requestDelete: fence → drain → finalise).
CREATE FUNCTION :schema.refuse_unfenced_delete(p_entity text, p_id text)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_referrers text[];
BEGIN
  SELECT restrict_referrers INTO v_referrers FROM :schema.entities WHERE name = p_entity;
  IF cardinality(v_referrers) > 0 AND NOT EXISTS (
    SELECT 1 FROM :schema.delete_fences WHERE entity = p_entity AND id = p_id AND state = 'finalizing'
  ) THEN
    RAISE EXCEPTION 'baton: % % has restrict references in %; delete it with requestDelete(), which asks them first',
      p_entity, p_id, array_to_string(v_referrers, ', ')
      USING ERRCODE = 'BR002';
  END IF;
END $$;

-- The value form, settings-independent (numbers are hashed as the double
-- JavaScript reads, never formatted; arrays and objects element by element).
CREATE FUNCTION :schema.member_text_nested(v jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF jsonb_typeof(v) = 'array' THEN
    RETURN 'a' || jsonb_array_length(v) || '[' ||
      coalesce((SELECT string_agg(coalesce(:schema.member_text(e), '~'), ',' ORDER BY i)
                FROM jsonb_array_elements(v) WITH ORDINALITY AS x(e, i)), '') || ']';
  END IF;
  RETURN 'o' || (SELECT count(*) FROM jsonb_each(v)) || '{' ||
    coalesce((SELECT string_agg(length(k) || ':' || k || coalesce(:schema.member_text(e), '~'), ',' ORDER BY n)
              FROM jsonb_each(v) WITH ORDINALITY AS x(k, e, n)), '') || '}';
END $$;

CREATE OR REPLACE FUNCTION :schema.member_text(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE jsonb_typeof(v)
    WHEN 'string' THEN 's' || length(v #>> '{}') || ':' || (v #>> '{}')
    -- past a double's range JavaScript reads Infinity, and JSON.stringify writes
    -- null; below its smallest step it reads (minus) zero, and writes 0
    WHEN 'number' THEN CASE
      WHEN abs(v::numeric) > 1.7976931348623157e308 THEN '~'
      WHEN abs(v::numeric) < 2.4703282292062328e-324 THEN 'n' || hashfloat8extended(0, 0)
      ELSE 'n' || hashfloat8extended(v::float8, 0) END
    WHEN 'boolean' THEN 'b' || (v #>> '{}')
    WHEN 'null' THEN '~'
    ELSE :schema.member_text_nested(v)
  END $$;

-- Stored hashes were computed with the old form: compute them again.
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT table_name FROM :schema.replicas LOOP
    IF to_regclass(':schema.' || quote_ident(r.table_name)) IS NOT NULL THEN
      EXECUTE format('UPDATE :schema.%I SET fields = fields', r.table_name);
    END IF;
  END LOOP;
END $$;
