-- The form of a JSON value that survives a trip through JavaScript: numbers
-- as IEEE doubles (1.50 → 1.5, as JSON.parse reads them), keys in jsonb's
-- own order. The caretaker compares an owner's fields (built from its
-- columns) with a replica's copy (parsed and re-serialised by Node) in this
-- form, so a copy that only changed its spelling of a number is not a
-- difference. plpgsql: a SQL function could not call itself.
CREATE FUNCTION :schema.canonical_jsonb(v jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
  CASE jsonb_typeof(v)
    WHEN 'number' THEN RETURN to_jsonb(v::float8);
    WHEN 'object' THEN
      RETURN (SELECT coalesce(jsonb_object_agg(k, :schema.canonical_jsonb(e)), '{}'::jsonb)
              FROM jsonb_each(v) AS x(k, e));
    WHEN 'array' THEN
      RETURN (SELECT coalesce(jsonb_agg(:schema.canonical_jsonb(e) ORDER BY i), '[]'::jsonb)
              FROM jsonb_array_elements(v) WITH ORDINALITY AS x(e, i));
    ELSE RETURN v;
  END CASE;
END $$;
