import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { type Command, InvalidArgumentError } from 'commander';
import pg from 'pg';
import {
  createDashboard,
  type HttpResponseLike,
  type RunningServer,
  type ServiceHandler,
  serveHttp,
} from '../../index.ts';
import { PgDatabase, schemaIdent } from '../../pg.ts';
import { OperationalError, UsageError } from '../cli-errors.ts';
import {
  CONNECT_TIMEOUT_MS,
  checkSchemaName,
  describeConnectionError,
  requireInstalled,
  resolveTarget,
  type Target,
} from '../connection.ts';
import type { GlobalOptions } from '../global-options.ts';
import { type CliIo, printLines } from '../output.ts';

/** Operator tokens shorter than this can be guessed; the dashboard refuses them. */
const MIN_TOKEN_LENGTH = 16;

interface DashboardCliOptions {
  port: number;
  host: string;
  basePath: string;
  service?: string;
  secureCookies?: boolean;
}

/** `baton dashboard`: serves one service's operator pages from its database, beside the service. */
export function registerDashboard(program: Command, io: CliIo): void {
  program
    .command('dashboard')
    .description(
      "serve this service's operator dashboard (lag, dead letters, sagas, references, caretaker runs) from its database, until SIGINT/SIGTERM; operators log in with the token from env BATON_DASHBOARD_TOKEN (or the file named by BATON_DASHBOARD_TOKEN_FILE, one token per line)",
    )
    .option('--port <port>', 'port to listen on (0: a free one, printed)', portNumber, 8089)
    .option(
      '--host <address>',
      'address to listen on (0.0.0.0 exposes it to the network)',
      '127.0.0.1',
    )
    .option('--base-path <path>', 'path the pages live under', basePathOption, '/dashboard')
    .option(
      '--secure-cookies',
      'mark the session cookie Secure (the dashboard is reached over HTTPS)',
    )
    .option(
      '--service <name>',
      "service name shown on every page (default: the one Baton recorded in the database, else the database's name)",
    )
    .action(async (local: DashboardCliOptions, command: Command) => {
      const options = command.optsWithGlobals<GlobalOptions>();
      const tokens = operatorTokens(io);
      await serveDashboard(options, local, tokens, io);
    });
}

/**
 * The operator tokens, from the environment only: a flag would show in `ps`.
 * BATON_DASHBOARD_TOKEN holds one; the file named by
 * BATON_DASHBOARD_TOKEN_FILE one per line (several while rotating).
 */
export function operatorTokens(io: CliIo): string[] {
  const inline = io.env.BATON_DASHBOARD_TOKEN;
  const file = io.env.BATON_DASHBOARD_TOKEN_FILE;
  if (inline && file) {
    throw new UsageError(
      'both BATON_DASHBOARD_TOKEN and BATON_DASHBOARD_TOKEN_FILE are set: set only one of them.',
    );
  }
  let tokens: string[];
  let from: string;
  if (file) {
    from = `the file named by BATON_DASHBOARD_TOKEN_FILE (${file})`;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new UsageError(
        `cannot read BATON_DASHBOARD_TOKEN_FILE (${(error as Error).message}): give the path of a file holding the operator token (one per line).`,
      );
    }
    tokens = text
      .split(/\r?\n/)
      .map((line) => line.trim())
      .filter((line) => line !== '');
  } else {
    from = 'BATON_DASHBOARD_TOKEN';
    tokens = inline ? [inline] : [];
  }
  if (tokens.length === 0) {
    throw new UsageError(
      file
        ? `${from} holds no token: put the operator token in it (e.g. from \`openssl rand -hex 24\`).`
        : 'no operator token: set BATON_DASHBOARD_TOKEN to the token operators log in with (at least 16 characters, e.g. from `openssl rand -hex 24`), or BATON_DASHBOARD_TOKEN_FILE to a file holding it. It is never taken from a flag: flags show in `ps`.',
    );
  }
  const short = tokens.find((t) => t.length < MIN_TOKEN_LENGTH);
  if (short !== undefined) {
    throw new UsageError(
      `the operator token from ${from} is ${short.length} characters: it needs at least ${MIN_TOKEN_LENGTH} (a short token can be guessed; e.g. \`openssl rand -hex 24\`).`,
    );
  }
  return tokens;
}

async function serveDashboard(
  options: GlobalOptions,
  local: DashboardCliOptions,
  tokens: string[],
  io: CliIo,
): Promise<void> {
  const target = resolveTarget(options, io);
  const schema = checkSchemaName(options.schema);
  const pool = new pg.Pool({
    connectionString: target.url,
    max: 4,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: 'baton-dashboard',
  });
  // Starting: an operator wants a connection error now. Serving: pages wait a little through a database restart.
  const startup = new PgDatabase({ pool, connectRetryMs: 0 });
  const db = new PgDatabase({ pool, connectRetryMs: 5_000 });
  let dashboard: ServiceHandler | undefined;
  let server: RunningServer | undefined;
  try {
    let service: string;
    try {
      await requireInstalled(startup, schema, target);
      service = local.service ?? (await recordedService(startup, schema, target));
    } catch (error) {
      const problem = describeConnectionError(error, target);
      if (problem) throw new OperationalError(problem, { cause: error });
      throw error;
    }
    dashboard = createDashboard({
      db,
      schema,
      service,
      operators: { tokens },
      basePath: local.basePath,
      secureCookies: local.secureCookies === true,
    });
    server = await listen(dashboard, local);
    const { port } = server.server.address() as AddressInfo;
    const host = local.host.includes(':') ? `[${local.host}]` : local.host;
    // Listening for the signals before saying where it serves: whoever reads the
    // line may stop it at once (a signal with no listener yet would kill it).
    const stopped = untilStopped();
    printLines(io, [
      `dashboard for ${service} at http://${host}:${port}${local.basePath}/ (log in with the operator token)`,
    ]);
    await stopped;
  } finally {
    await server?.close();
    await dashboard?.close();
    await startup.close();
    await db.close();
    await pool.end().catch(() => {});
  }
}

/** The service's name as Baton recorded it (`settings`), else the database's, else "baton". */
async function recordedService(db: PgDatabase, schema: string, target: Target): Promise<string> {
  const s = schemaIdent(schema);
  const r = await db.query<{ value: string | null }>(
    `SELECT CASE WHEN to_regclass($1) IS NULL THEN NULL
       ELSE (SELECT value FROM ${s}.settings WHERE name = 'service') END AS value`,
    [`${s}.settings`],
  );
  return r.rows[0]?.value || target.database || 'baton';
}

/** Serves the dashboard alone; `/` leads to its pages. */
async function listen(
  dashboard: ServiceHandler,
  local: DashboardCliOptions,
): Promise<RunningServer> {
  const home: HttpResponseLike = {
    status: 303,
    headers: { location: `${local.basePath}/` },
    body: '',
  };
  try {
    return await serveHttp(
      (request, signal) =>
        request.url === '/' ? Promise.resolve(home) : dashboard.handle(request, signal),
      { port: local.port, host: local.host, refuseEarly: (head) => dashboard.refuseEarly(head) },
    );
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const where = `${local.host}:${local.port}`;
    if (code === 'EADDRINUSE')
      throw new OperationalError(
        `cannot listen on ${where}: the port is in use. Choose another with --port (--port 0 picks a free one).`,
        { cause: error },
      );
    if (code === 'EACCES')
      throw new OperationalError(
        `cannot listen on ${where}: permission denied (ports below 1024 need privileges). Choose another with --port.`,
        { cause: error },
      );
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN')
      throw new OperationalError(
        `cannot listen on ${where}: no such address on this machine (${code}). Check --host (default 127.0.0.1; 0.0.0.0 for every interface).`,
        { cause: error },
      );
    throw error;
  }
}

/** Resolves on the first SIGINT or SIGTERM; a second one ends the process at once (Node's default). */
function untilStopped(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

function portNumber(value: string): number {
  const n = Number(value);
  if (!(/^[0-9]+$/.test(value) && n <= 65_535)) {
    throw new InvalidArgumentError('expected a port number, 0 to 65535 (0: a free one).');
  }
  return n;
}

function basePathOption(value: string): string {
  const path = value.replace(/\/+$/, '');
  if (!/^(\/[A-Za-z0-9._~-]+)+$/.test(path)) {
    throw new InvalidArgumentError(
      'expected a path below the root such as /dashboard (letters, digits, . _ ~ - and /).',
    );
  }
  return path;
}
