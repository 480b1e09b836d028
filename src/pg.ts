export {
  type EmbeddedPostgres,
  type EmbeddedPostgresOptions,
  freePort,
  startEmbeddedPostgres,
} from './db/embedded.ts';
export { PgDatabase, type PgDatabaseOptions } from './db/pg-database.ts';
