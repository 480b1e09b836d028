import type { Command } from 'commander';
import pg from 'pg';
import { InvalidInputError, lastAppliedMigration, SchemaNotInstalledError } from '../index.ts';
import { PgDatabase, schemaIdent } from '../pg.ts';
import { OperationalError, UsageError } from './cli-errors.ts';
import type { CliIo } from './output.ts';

/** Options every command that touches the database shares. */
export interface ConnectionOptions {
  databaseUrl?: string;
  schema: string;
}

/** Where the command connects, for messages (never the password). */
export interface Target {
  url: string;
  /** Where the URL came from, so messages say what to fix. */
  from: '--database-url' | 'BATON_DATABASE_URL' | 'DATABASE_URL';
  host: string;
  port: number;
  database: string;
  user: string;
}

export const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Whether Baton's statements run prepared on the CLI's connections: yes,
 * unless BATON_PREPARED_STATEMENTS=off — behind a pooler that cannot keep
 * prepared statements (PgBouncer in transaction mode before 1.21), as
 * `new PgDatabase({ preparedStatements: false })` is in a service.
 */
export function preparedStatementsFrom(env: CliIo['env']): boolean {
  const value = env.BATON_PREPARED_STATEMENTS;
  if (value === undefined || value === '' || value === 'on') return true;
  if (value === 'off') return false;
  throw new UsageError(
    `BATON_PREPARED_STATEMENTS must be "on" or "off" (got ${JSON.stringify(value.slice(0, 40))}); set it to "off" behind a pooler that cannot keep prepared statements.`,
  );
}

/** The URL from --database-url, else BATON_DATABASE_URL, else DATABASE_URL. */
export function resolveTarget(options: ConnectionOptions, io: CliIo): Target {
  const [from, url] = options.databaseUrl
    ? (['--database-url', options.databaseUrl] as const)
    : io.env.BATON_DATABASE_URL
      ? (['BATON_DATABASE_URL', io.env.BATON_DATABASE_URL] as const)
      : (['DATABASE_URL', io.env.DATABASE_URL] as const);
  if (!url) {
    throw new UsageError(
      'no database URL: pass --database-url postgresql://user:password@host:5432/dbname, or set BATON_DATABASE_URL (DATABASE_URL is used when BATON_DATABASE_URL is not set).',
    );
  }
  if (!/^postgres(ql)?:\/\//i.test(url)) {
    throw new UsageError(
      `the database URL from ${from} does not start with postgresql:// (got "${redact(url)}"): use the form postgresql://user:password@host:5432/dbname (a Unix socket: postgresql://user@/dbname?host=/var/run/postgresql).`,
    );
  }
  // pg's own parsing of the URL, so the host and port named in messages are the ones it dials.
  let client: pg.Client;
  try {
    client = new pg.Client({ connectionString: url });
  } catch (error) {
    throw new UsageError(
      `the database URL from ${from} ("${redact(url)}") cannot be parsed (${(error as Error).message}): use the form postgresql://user:password@host:5432/dbname.`,
    );
  }
  return {
    url,
    from,
    host: client.host,
    port: client.port,
    database: client.database ?? '',
    user: client.user ?? '',
  };
}

/** Validates --schema once, at the edge. */
export function checkSchemaName(schema: string): string {
  try {
    schemaIdent(schema);
  } catch (error) {
    if (error instanceof InvalidInputError) throw new UsageError(`--schema: ${error.message}`);
    throw error;
  }
  return schema;
}

/**
 * Opens a small pool, runs `fn`, closes the pool. Connection failures are
 * turned into messages that name the host and port and what to check.
 */
export async function withDatabase<T>(
  options: ConnectionOptions,
  io: CliIo,
  fn: (db: PgDatabase, target: Target) => Promise<T>,
): Promise<T> {
  const target = resolveTarget(options, io);
  checkSchemaName(options.schema);
  const preparedStatements = preparedStatementsFrom(io.env);
  const pool = new pg.Pool({
    connectionString: target.url,
    max: 2,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: 'baton-cli',
  });
  // An operator wants the connection error now, not after the library's wait for a restart.
  const db = new PgDatabase({
    pool,
    connectRetryMs: 0,
    preparedStatements,
  });
  try {
    return await fn(db, target);
  } catch (error) {
    const problem = describeConnectionError(error, target);
    if (problem) throw new OperationalError(problem, { cause: error });
    throw error;
  } finally {
    await db.close();
    await pool.end().catch(() => {});
  }
}

/** Throws `SchemaNotInstalledError` (naming the database) when Baton is not in `schema`. */
export async function requireInstalled(
  db: PgDatabase,
  schema: string,
  target: Target,
): Promise<void> {
  if ((await lastAppliedMigration(db, schema)) !== undefined) return;
  const error = new SchemaNotInstalledError(schema);
  throw new OperationalError(
    error.message.replace(
      'in this database',
      `in database "${target.database}" at ${where(target)}`,
    ),
    { cause: error },
  );
}

/** Connects, checks that Baton is installed in the command's schema, runs `fn`: the body of every command on a service's database. */
export function runInstalled<O extends ConnectionOptions & { schema: string }>(
  io: CliIo,
  command: Command,
  fn: (db: PgDatabase, options: O) => Promise<void>,
): Promise<void> {
  const options = command.optsWithGlobals<O>();
  return withDatabase(options, io, async (db, target) => {
    await requireInstalled(db, options.schema, target);
    await fn(db, options);
  });
}

function where(target: Target): string {
  return target.host.startsWith('/') ? `socket ${target.host}` : `${target.host}:${target.port}`;
}

/** A message for errors that mean "could not talk to the database at all"; undefined for others. */
export function describeConnectionError(error: unknown, target: Target): string | undefined {
  const at = where(target);
  const url = `the URL given by ${target.from}`;
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  switch (code) {
    case 'ECONNREFUSED':
    case 'ENOENT':
      return `cannot connect to PostgreSQL at ${at}: connection refused. Check that the server is running and accepts connections on that host and port; check ${url}.`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot connect to PostgreSQL: host "${target.host}" could not be resolved. Check the host name in ${url}, and your DNS.`;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `cannot connect to PostgreSQL at ${at}: the host is unreachable (${code}). Check the network path and firewall to that host and port; check ${url}.`;
    case 'ECONNRESET':
    case 'EPIPE':
      return `the connection to PostgreSQL at ${at} was closed by the server (${code}). Check the server's log and its SSL settings (add ?sslmode=require to the URL if it requires SSL).`;
    case '28P01':
    case '28000':
      return `PostgreSQL at ${at} refused user "${target.user}": ${message}. Check the user name and password in ${url}, and the server's pg_hba.conf.`;
    case '3D000':
      return `database "${target.database}" does not exist on the PostgreSQL server at ${at}. Check the database name in ${url}.`;
    case '57P03':
      return `PostgreSQL at ${at} is not accepting connections yet (${message}). Wait for it to finish starting, then run the command again.`;
    case '53300':
      return `PostgreSQL at ${at} has no free connection slots (${message}). Try again later, or raise max_connections.`;
  }
  if (typeof code === 'string' && code.startsWith('08')) {
    return `cannot talk to PostgreSQL at ${at}: ${message} (SQLSTATE ${code}). Check that the server is healthy; check ${url}.`;
  }
  if (/timeout/i.test(message) && /connect/i.test(message)) {
    return `cannot connect to PostgreSQL at ${at}: no answer within ${CONNECT_TIMEOUT_MS / 1000} s. Check that the host and port are right and that a firewall does not drop the connection (${url}).`;
  }
  if (/Connection terminated unexpectedly/i.test(message)) {
    return `the connection to PostgreSQL at ${at} was closed unexpectedly. Check the server's log and that the port belongs to a PostgreSQL server (${url}).`;
  }
  if (/SSL/.test(message) && !(typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code))) {
    return `cannot set up SSL with PostgreSQL at ${at}: ${message}. Adjust sslmode in the URL (e.g. ?sslmode=disable for a local server, ?sslmode=require for a managed one).`;
  }
  return undefined;
}

/** Node's socket errors, pg's SQLSTATE, or the first code inside an AggregateError (Happy Eyeballs). */
function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  const inner = (error as { errors?: unknown }).errors;
  if (Array.isArray(inner)) for (const e of inner) if (errorCode(e)) return errorCode(e);
  return undefined;
}

/**
 * A database URL fit to print: the password — everything after the first
 * `:` of the user info, up to the LAST `@` (a password may hold `/`, `@`,
 * `#`, `?`) — and any `password=` parameter replaced by `***`. Works on text
 * that does not parse as a URL too: that is when it gets printed.
 */
export function redact(url: string): string {
  const masked = url.replace(/([?&]password=)[^&]*/gi, '$1***');
  const at = masked.lastIndexOf('@');
  if (at === -1) return masked;
  const scheme = /^[a-z][a-z0-9+.-]*:\/+/i.exec(masked)?.[0] ?? '';
  const userinfo = masked.slice(scheme.length, at);
  const colon = userinfo.indexOf(':');
  const user = colon === -1 ? userinfo : `${userinfo.slice(0, colon)}:***`;
  return `${scheme}${user}${masked.slice(at)}`;
}
