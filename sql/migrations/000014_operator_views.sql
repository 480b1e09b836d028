-- What the dashboard pages through, each page one index range (fast on
-- hundreds of thousands of rows): sagas newest first, all or of one state,
-- and dead letters oldest first, all or of one subscription.
CREATE INDEX sagas_newest ON :schema.sagas (created_at DESC, id DESC);
CREATE INDEX sagas_by_state ON :schema.sagas (state, created_at DESC, id DESC);
CREATE INDEX inbox_dead ON :schema.inbox (id) WHERE status = 'dead';
CREATE INDEX inbox_dead_by_subscription ON :schema.inbox (subscription, id) WHERE status = 'dead';
-- Keys held up by a failure (a pending entry that failed, a typed dead
-- letter), per subscription: the status counts them from this index alone.
CREATE INDEX inbox_blockers ON :schema.inbox (subscription, key)
  WHERE (status = 'pending' AND attempts > 0) OR (status = 'dead' AND type IS NOT NULL);
-- The oldest saga still running, completing or compensating (status, metrics,
-- the overview): the first entry of this index, however many sagas finished.
CREATE INDEX sagas_active ON :schema.sagas (created_at, id)
  WHERE state IN ('running', 'completing', 'compensating');
