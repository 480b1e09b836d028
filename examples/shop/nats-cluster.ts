import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/pg.ts';

/**
 * A real JetStream cluster on loopback for the demo, the chaos harness and
 * the tests: three `nats-server` processes (Debian's package), file storage
 * in a temporary directory, routes between all three. Nodes can be killed,
 * paused and started again on the same ports and storage.
 */
export const NATS_SERVER = process.env.BATON_NATS_SERVER ?? '/usr/sbin/nats-server';

export interface NatsNode {
  name: string;
  port: number;
  clusterPort: number;
  process: ChildProcess | undefined;
}

export interface NatsCluster {
  /** Client URLs of all nodes (`nats://127.0.0.1:<port>`). */
  servers: string[];
  nodes: NatsNode[];
  kill(index: number, signal?: NodeJS.Signals): Promise<void>;
  start(index: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startNatsCluster(
  size = 3,
  /** More server configuration for every node (e.g. an `authorization` block). */
  extraConfig = '',
): Promise<NatsCluster> {
  if (!existsSync(NATS_SERVER))
    throw new Error(
      `nats-server is not at ${NATS_SERVER}: install it (\`apt-get install -y nats-server\`, as .ci/run and \`npm test\`'s pre-step do where they can), or point BATON_NATS_SERVER at one.`,
    );
  const dir = mkdtempSync(join(tmpdir(), 'baton-nats-'));
  const nodes: NatsNode[] = [];
  for (let i = 0; i < size; i++)
    nodes.push({
      name: `n${i + 1}`,
      port: await freePort(),
      clusterPort: await freePort(),
      process: undefined,
    });
  const config = (node: NatsNode) => `
server_name: ${node.name}
listen: 127.0.0.1:${node.port}
jetstream { store_dir: "${join(dir, node.name)}", max_memory_store: 64MB, max_file_store: 1GB }
cluster {
  name: baton
  # Clients dial only the URLs they were given (the chaos harness puts fault proxies there).
  no_advertise: true
  listen: 127.0.0.1:${node.clusterPort}
  routes: [${nodes
    .filter((n) => n !== node)
    .map((n) => `nats-route://127.0.0.1:${n.clusterPort}`)
    .join(', ')}]
}
${extraConfig}
`;
  const start = async (index: number) => {
    const node = nodes[index] as NatsNode;
    const file = join(dir, `${node.name}.conf`);
    writeFileSync(file, config(node));
    node.process = spawn(NATS_SERVER, ['-c', file], { stdio: 'ignore' });
    await untilListening(node.port);
  };
  const kill = async (index: number, signal: NodeJS.Signals = 'SIGKILL') => {
    const node = nodes[index] as NatsNode;
    const child = node.process;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    if (signal === 'SIGKILL' || signal === 'SIGTERM') {
      await exited;
      node.process = undefined;
    }
  };
  await Promise.all(nodes.map((_, i) => start(i)));
  return {
    servers: nodes.map((n) => `nats://127.0.0.1:${n.port}`),
    nodes,
    kill,
    start,
    async stop() {
      for (const node of nodes) node.process?.kill('SIGCONT'); // a paused node dies too
      await Promise.all(nodes.map((_, i) => kill(i, 'SIGKILL')));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function untilListening(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connectTcp(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline)
      throw new Error(`nats-server did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
