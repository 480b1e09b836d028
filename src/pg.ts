export {
  type EmbeddedPostgres,
  type EmbeddedPostgresOptions,
  startEmbeddedPostgres,
} from './db/embedded.ts';
export { freePort } from './db/free-port.ts';
export { pgClient } from './db/pg-client.ts';
export { isConnectionError, PgDatabase, type PgDatabaseOptions } from './db/pg-database.ts';
export { withoutPreparedStatements } from './db/prepared.ts';
export { schemaIdent } from './db/sql.ts';
