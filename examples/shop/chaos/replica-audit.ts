import pg from 'pg';

/**
 * The replica audit: every UPDATE of a referrer's `baton.replica_customer`
 * row, with its state and version before and after, recorded by a trigger in
 * the same transaction (a write rolled back leaves no row). It is how the
 * checker sees a replica that moved back in time while the run went on —
 * e.g. a caretaker repair applying an answer the owner gave before a newer
 * event was applied — which the final state alone can hide (the next event
 * puts it forward again).
 *
 * An ordinary trigger: it fires for Baton's own writes (consumer, caretaker,
 * policies), and not in sessions with `session_replication_role = replica`
 * — the harness's hand tampering, which is not Baton's doing. It lives in its
 * own schema (`chaos`): the harness's, not Baton's. Installed by the harness
 * once the services have created their replicas, before any customer exists.
 */
export const REFERRERS = ['orders', 'loyalty'] as const;
export type Referrer = (typeof REFERRERS)[number];

const AUDIT_SQL = `
  CREATE SCHEMA IF NOT EXISTS chaos;
  CREATE TABLE IF NOT EXISTS chaos.replica_audit (
    seq bigserial PRIMARY KEY,
    id text NOT NULL,
    old_state text NOT NULL, new_state text NOT NULL,
    old_version bigint NOT NULL, new_version bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
  CREATE OR REPLACE FUNCTION chaos.audit_replica_update() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    INSERT INTO chaos.replica_audit (id, old_state, new_state, old_version, new_version)
    VALUES (NEW.id::text, OLD.state, NEW.state, OLD.version, NEW.version);
    RETURN NULL;
  END $$;
  CREATE OR REPLACE TRIGGER chaos_replica_audit AFTER UPDATE ON baton.replica_customer
    FOR EACH ROW EXECUTE FUNCTION chaos.audit_replica_update();`;

/** Installs the audit at each referrer (idempotent). */
export async function installReplicaAudit(databaseUrls: Record<Referrer, string>): Promise<void> {
  for (const referrer of REFERRERS) {
    const client = new pg.Client({ connectionString: databaseUrls[referrer] });
    await client.connect();
    try {
      await client.query(AUDIT_SQL);
    } finally {
      await client.end();
    }
  }
}
