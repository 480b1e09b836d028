-- What the dashboard pages through, each page one index range (fast on
-- hundreds of thousands of rows): sagas newest first, all or of one state,
-- and dead letters oldest first, all or of one subscription.
CREATE INDEX sagas_newest ON :schema.sagas (created_at DESC, id DESC);
CREATE INDEX sagas_by_state ON :schema.sagas (state, created_at DESC, id DESC);
CREATE INDEX inbox_dead ON :schema.inbox (id) WHERE status = 'dead';
CREATE INDEX inbox_dead_by_subscription ON :schema.inbox (subscription, id) WHERE status = 'dead';
