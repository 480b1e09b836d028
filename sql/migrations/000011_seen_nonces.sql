-- The nonces of signed requests this service has accepted, until their
-- signatures expire: kept in the service's database, not one process's
-- memory, so that a captured request is refused after a restart and by
-- every other instance of the service too. `expires_at` is in milliseconds
-- of the accepting instance's clock (2 × the signature window after it was
-- seen); expired rows are deleted by the instances as they go.
CREATE TABLE :schema.seen_nonces (
  nonce text PRIMARY KEY,
  expires_at bigint NOT NULL
);
CREATE INDEX seen_nonces_expiry ON :schema.seen_nonces (expires_at);
