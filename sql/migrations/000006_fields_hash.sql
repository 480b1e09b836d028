-- The caretaker compares an owner's fields with a replica's copy by a hash of
-- each row's fields. Building a jsonb value of every owner row to hash it
-- (what 000005 served) cost about 1.2 µs a row — most of a reconciliation's
-- scan. Instead each value gets a short text form that an owner can compute
-- straight from its typed column (entity-owner.ts) and a replica from the
-- jsonb value it holds (below), identical for the same value:
--
--   string   s<length>:<text>
--   number   n<hashfloat8extended(value as a double)>   (as JavaScript reads it;
--            no float formatting, so no dependence on extra_float_digits;
--            past a double's range: ~, the null JavaScript writes for it)
--   boolean  btrue | bfalse
--   null     ~
--   other    j<length>:<canonical_jsonb(value)::text>    (objects, arrays)
--
-- and the fields of a row are <key length>:<key><value form> for each key in
-- jsonb's key order (shorter keys first, then bytewise).
CREATE FUNCTION :schema.member_text(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE jsonb_typeof(v)
    WHEN 'string' THEN 's' || length(v #>> '{}') || ':' || (v #>> '{}')
    -- past a double's range JavaScript reads Infinity, and JSON.stringify writes
    -- null; below its smallest step it reads (minus) zero, and writes 0
    WHEN 'number' THEN CASE
      WHEN abs(v::numeric) > 1.7976931348623157e308 THEN '~'
      WHEN abs(v::numeric) < 2.4703282292062328e-324 THEN 'n' || hashfloat8extended(0, 0)
      ELSE 'n' || hashfloat8extended(v::float8, 0) END
    WHEN 'boolean' THEN 'b' || v::text
    WHEN 'null' THEN '~'
    ELSE 'j' || length(:schema.canonical_jsonb(v)::text) || ':' || :schema.canonical_jsonb(v)::text
  END $$;

-- The hash of a replica row's fields (stored with the row as a generated
-- column, so a hand edit of `fields` changes it too, triggers or not).
-- (Something other than an object — only a hand edit can put one there — is
-- hashed as its value form, so it differs from every owner row.)
CREATE FUNCTION :schema.fields_hash(fields jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(fields) = 'object' THEN
    (SELECT hashtextextended(coalesce(string_agg(length(e.key) || ':' || e.key || :schema.member_text(e.value), '' ORDER BY e.n), ''), 2)
     FROM jsonb_each(fields) WITH ORDINALITY AS e(key, value, n))
  ELSE hashtextextended('!' || :schema.member_text(fields), 2) END $$;
