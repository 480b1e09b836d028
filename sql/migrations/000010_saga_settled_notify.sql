-- A saga that settles — completed, compensated, or stuck for an operator —
-- tells whoever waits for it: `sagas.waitFor` LISTENs on
-- baton_sagas_<schema> and re-reads the saga when its id arrives, instead of
-- polling. A trigger, not the store's writers, so that every path that
-- settles a saga (workers, the operator's retry and abort) tells it. The
-- NOTIFY is sent at commit, with the state it announces.
CREATE OR REPLACE FUNCTION :schema.saga_settled_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('baton_sagas_' || TG_TABLE_SCHEMA, NEW.id);
  RETURN NULL;
END $$;

CREATE TRIGGER saga_settled AFTER UPDATE OF state ON :schema.sagas
  FOR EACH ROW
  WHEN (NEW.state IN ('completed', 'compensated', 'stuck') AND OLD.state IS DISTINCT FROM NEW.state)
  EXECUTE FUNCTION :schema.saga_settled_notify();
