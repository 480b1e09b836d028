-- Undoable participant actions: a saga compensates a call whose outcome it
-- does not know (a crash or a lost answer after the call may have run), so
-- the participant must tell "ran" from "never ran" — and a late original
-- arriving after its undo must not run.
--   done     the action ran (result stored)
--   undone   it ran, then was undone
--   blocked  its undo came first: it never ran, and now never will
ALTER TABLE :schema.idempotency_keys
  ADD COLUMN state text NOT NULL DEFAULT 'done' CHECK (state IN ('done', 'undone', 'blocked')),
  ADD COLUMN undone_at timestamptz;
