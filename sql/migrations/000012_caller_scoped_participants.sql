-- A participant's barrier rows and idempotency keys belong to the service
-- that called (`caller`, known when services sign with their own keys; ''
-- with a shared secret) and, for the barrier, to the resource: a cancel
-- sent by another service for the same (transaction, branch) lands in that
-- service's own rows, and a confirm naming another resource finds no try
-- there. Seals cover the caller; a row without one keeps its seal as it was.
ALTER TABLE :schema.barrier ADD COLUMN caller text NOT NULL DEFAULT '';
ALTER TABLE :schema.barrier DROP CONSTRAINT barrier_pkey;
ALTER TABLE :schema.barrier ADD PRIMARY KEY (caller, resource, tx_id, branch, op);

DROP FUNCTION :schema.barrier_seal(text, text, text, text, text, jsonb);
CREATE FUNCTION :schema.barrier_seal(tx_id text, branch text, op text, resource text,
  outcome text, result jsonb, caller text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN caller = ''
    THEN :schema.seal('barrier', tx_id, branch, op, resource, outcome, result::text)
    ELSE :schema.seal('barrier', tx_id, branch, op, resource, outcome, result::text, caller) END
$$;

ALTER TABLE :schema.idempotency_keys ADD COLUMN caller text NOT NULL DEFAULT '';
ALTER TABLE :schema.idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE :schema.idempotency_keys ADD PRIMARY KEY (caller, key);

DROP FUNCTION :schema.idempotency_seal(text, text, text, jsonb);
CREATE FUNCTION :schema.idempotency_seal(key text, action text, state text, result jsonb,
  caller text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN caller = ''
    THEN :schema.seal('idempotency', key, action, state, result::text)
    ELSE :schema.seal('idempotency', key, action, state, result::text, caller) END
$$;
