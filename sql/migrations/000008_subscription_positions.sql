-- What an operator needs to see and fix a subscription that cannot go on:
-- the producer pruned past its cursor (the feed answers 410), or a key is
-- blocked and the inbox grows behind it.

-- The consumer's dead-letter mode, written at start-up, so status readers
-- know which entries block their key ('block-key': dead letters too).
-- A consumer refused by its producer (410: the events after its cursor were
-- pruned) records which cursor was refused, since when, and the oldest
-- position the producer still serves in full (the cursor to resume from,
-- losing the events in between). The subscription is stuck while its
-- cursor is still the refused one: moving the cursor ends it by itself.
ALTER TABLE :schema.subscriptions
  ADD COLUMN on_dead_letter text NOT NULL DEFAULT 'block-key'
    CHECK (on_dead_letter IN ('block-key', 'skip')),
  ADD COLUMN expired_cursor text,
  ADD COLUMN cursor_expired_at timestamptz,
  ADD COLUMN oldest_retained text;

-- Ranges of a source's feed a subscription will never read: the events
-- after from_position up to and including to_position. Written when an
-- operator moves a cursor forward; open until someone reconciles what the
-- subscription missed (the caretaker repairs replicas of entities; other
-- events in the range are lost to this subscription) and sets reconciled_at.
-- No foreign key to subscriptions: the record of a loss outlives the
-- subscription (and does not stand in the way of truncating it).
CREATE TABLE :schema.data_loss (
  id bigserial PRIMARY KEY,
  subscription text NOT NULL,
  from_position text NOT NULL,
  to_position text NOT NULL,
  reason text NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  reconciled_at timestamptz
);
CREATE INDEX data_loss_open ON :schema.data_loss (subscription, id) WHERE reconciled_at IS NULL;
