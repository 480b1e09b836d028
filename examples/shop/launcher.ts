import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { generateServiceKeys } from '../../src/index.ts';
import { type EmbeddedPostgres, freePort, startEmbeddedPostgres } from '../../src/pg.ts';
import type { ConsumerSettings, ServiceConfig } from './config.ts';
import { type NatsCluster, startNatsCluster } from './nats-cluster.ts';

export const SERVICES = ['customers', 'orders', 'loyalty'] as const;
export type ServiceName = (typeof SERVICES)[number];

export interface ShopOptions {
  /** One embedded PostgreSQL per service instead of three databases in one. */
  separateClusters?: boolean;
  /** Where a service reaches a peer (e.g. through a fault proxy); default the peer's own port. */
  peerUrl?: (from: ServiceName, to: ServiceName, directUrl: string) => string;
  caretakerEveryMs?: number;
  leaseMs?: number;
  /** Called with each line a service writes to stderr. */
  onLog?: (service: ServiceName, line: string) => void;
  /** Extra postgres flags (e.g. a faster checkpoint setting in chaos runs). */
  postgresFlags?: string[];
  /** Ports for the services (e.g. chosen first so fault proxies can point at them); free ones otherwise. */
  ports?: Partial<Record<ServiceName, number>>;
  /** Consumer settings per service (e.g. a small backlog limit at loyalty); defaults otherwise. */
  consumers?: Partial<Record<ServiceName, ConsumerSettings>>;
  /** Each service records its spans in `<traceDir>/<service>.jsonl` (OpenTelemetry SDK in the process). */
  traceDir?: string;
  /** Between the services: the HTTP feed (default), or NATS JetStream on a 3-node cluster started here. */
  transport?: 'http' | 'nats';
  /** What the services dial for the JetStream nodes (e.g. fault proxies in front of them); the nodes' own URLs otherwise. */
  natsVia?: (servers: string[]) => string[];
}

/** A service process that ended without being told to (not killed, restarted or stopped by us). */
export interface UnexpectedExit {
  service: ServiceName;
  code: number | null;
  signal: string | null;
  at: string;
  /** The last lines it wrote to stderr. */
  said: string[];
}

export type ServiceKeys = ReturnType<typeof generateServiceKeys>;

export interface RunningShop {
  urls: Record<ServiceName, string>;
  databaseUrls: Record<ServiceName, string>;
  /** Each service's identity (its signing auth and public key): the chaos harness signs as them. */
  identities: Record<ServiceName, ServiceKeys>;
  adminToken: string;
  clusters: EmbeddedPostgres[];
  /** The JetStream cluster, with `transport: 'nats'`. */
  nats: NatsCluster | undefined;
  process(name: ServiceName): ChildProcess | undefined;
  /** Service processes that died on their own since the start (a crash is a bug: workers must not die). */
  unexpectedExits: UnexpectedExit[];
  /** SIGKILL (or another signal) to one service process. */
  signal(name: ServiceName, signal: NodeJS.Signals): void;
  /** Starts a service process again (after a kill) on the same port, optionally with its clock off. */
  restart(
    name: ServiceName,
    overrides?: Partial<Pick<ServiceConfig, 'clockOffsetMs'>>,
  ): Promise<void>;
  stop(): Promise<void>;
}

const MAIN = fileURLToPath(new URL('./service-main.ts', import.meta.url));

/** Starts PostgreSQL, the three databases and the three service processes; resolves when all serve. */
export async function startShop(options: ShopOptions = {}): Promise<RunningShop> {
  const clusters: EmbeddedPostgres[] = [];
  const databaseUrls = {} as Record<ServiceName, string>;
  if (options.separateClusters) {
    for (const name of SERVICES) {
      const cluster = await startEmbeddedPostgres({ flags: options.postgresFlags });
      clusters.push(cluster);
      databaseUrls[name] = await cluster.createDatabase(name);
    }
  } else {
    const cluster = await startEmbeddedPostgres({ flags: options.postgresFlags });
    clusters.push(cluster);
    for (const name of SERVICES) databaseUrls[name] = await cluster.createDatabase(name);
  }
  const nats = options.transport === 'nats' ? await startNatsCluster(3) : undefined;
  const ports = {} as Record<ServiceName, number>;
  for (const name of SERVICES) ports[name] = options.ports?.[name] ?? (await freePort());
  const urls = Object.fromEntries(
    SERVICES.map((n) => [n, `http://127.0.0.1:${ports[n]}`]),
  ) as Record<ServiceName, string>;
  const identities = Object.fromEntries(
    SERVICES.map((name) => [name, generateServiceKeys(name, `${name}-1`)]),
  ) as Record<ServiceName, ServiceKeys>;
  const adminToken = randomBytes(24).toString('hex');
  const children = new Map<ServiceName, ChildProcess>();
  const unexpectedExits: UnexpectedExit[] = [];
  /** Processes we signalled to end (SIGKILL, SIGTERM): their exit is expected. */
  const toldToExit = new WeakSet<ChildProcess>();

  const overridesOf = new Map<ServiceName, Partial<ServiceConfig>>();
  const configOf = (name: ServiceName): ServiceConfig => ({
    ...overridesOf.get(name),
    service: name,
    port: ports[name],
    databaseUrl: databaseUrls[name],
    peers: Object.fromEntries(
      SERVICES.map((peer) => [
        peer,
        options.peerUrl ? options.peerUrl(name, peer, urls[peer]) : urls[peer],
      ]),
    ) as ServiceConfig['peers'],
    keys: {
      keyId: identities[name].auth.keyId,
      privateKey: identities[name].auth.privateKey,
      peers: Object.fromEntries(
        SERVICES.filter((peer) => peer !== name).map((peer) => [
          peer,
          [identities[peer].publicKey],
        ]),
      ),
    },
    adminToken,
    caretakerEveryMs: options.caretakerEveryMs,
    leaseMs: options.leaseMs,
    consumer: options.consumers?.[name],
    traceFile: options.traceDir ? join(options.traceDir, `${name}.jsonl`) : undefined,
    natsServers: nats && (options.natsVia?.(nats.servers) ?? nats.servers),
    instance: `${name}-${process.pid}`,
  });

  const launch = (name: ServiceName) =>
    new Promise<void>((resolve, reject) => {
      // The config (secrets, database URL) goes on stdin, not argv: `ps` shows argv to every user.
      const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      child.stdin?.write(`${JSON.stringify(configOf(name))}\n`);
      children.set(name, child);
      const timer = setTimeout(
        () => reject(new Error(`${name} did not start within 60 s`)),
        60_000,
      );
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
        if (line.startsWith('ready ')) {
          clearTimeout(timer);
          resolve();
        }
      });
      // The last lines a service wrote say why it could not start; the error carries them.
      const lastLines: string[] = [];
      createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
        lastLines.push(line);
        if (lastLines.length > 20) lastLines.shift();
        options.onLog?.(name, line);
      });
      // 'close', not 'exit': by then stderr is read to its end, last words included.
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        if (!toldToExit.has(child))
          unexpectedExits.push({
            service: name,
            code,
            signal,
            at: new Date().toISOString(),
            said: [...lastLines],
          });
        const said = lastLines.length > 0 ? `; it said:\n${lastLines.join('\n')}` : '';
        reject(
          new Error(`${name} exited before it was ready (code ${code}, signal ${signal})${said}`),
        );
      });
    });

  // customers first: the others look its entities up at start-up.
  await launch('customers');
  await Promise.all([launch('orders'), launch('loyalty')]);

  return {
    urls,
    databaseUrls,
    identities,
    adminToken,
    clusters,
    nats,
    process: (name) => children.get(name),
    unexpectedExits,
    signal(name, signal) {
      const child = children.get(name);
      if (!child) return;
      if (signal === 'SIGKILL' || signal === 'SIGTERM') toldToExit.add(child);
      child.kill(signal);
    },
    async restart(name, overrides) {
      if (overrides) overridesOf.set(name, overrides);
      const old = children.get(name);
      if (old && old.exitCode === null && old.signalCode === null) {
        toldToExit.add(old);
        old.kill('SIGKILL');
        await new Promise((resolve) => old.once('exit', resolve));
      }
      await launch(name);
    },
    async stop() {
      await Promise.all(
        [...children.values()].map(
          (child) =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null || child.signalCode !== null) return resolve();
              toldToExit.add(child);
              child.once('exit', () => resolve());
              child.kill('SIGTERM');
              setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
            }),
        ),
      );
      for (const cluster of clusters) await cluster.stop();
      await nats?.stop();
    },
  };
}
