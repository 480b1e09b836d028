import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

/**
 * A TCP fault proxy on loopback for links that are not HTTP — the services'
 * connections to the JetStream nodes (the HTTP-aware `fault-proxy.ts` cannot
 * carry NATS's protocol). Bytes pass through unchanged; on the nemesis's
 * word a link is
 *
 * - `cut`: every connection through it reset at once, new ones refused for a
 *   while (a node unreachable: clients reconnect to another);
 * - `hold`: every connection stalls in both directions — nothing read,
 *   nothing forwarded, nothing closed — until healed (a partition the
 *   sockets do not notice; what was sent is delivered after it).
 *
 * The nodes must not advertise their own addresses to clients
 * (`no_advertise`), or clients would go round the proxy.
 */
export class TcpFaultProxy {
  private target: { host: string; port: number } | undefined;
  private readonly pairs = new Set<[Socket, Socket]>();
  private refuseUntil = 0;
  private holding = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(): Promise<TcpFaultProxy> {
    let proxy: TcpFaultProxy | undefined;
    const server = createServer((client) => proxy?.accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (!address || typeof address === 'string') throw new Error('TCP fault proxy has no port');
    proxy = new TcpFaultProxy(server, address.port);
    return proxy;
  }

  /** Where it forwards to (`nats://host:port`); returns the URL to dial instead. */
  forwardTo(url: string): string {
    const { hostname, port } = new URL(url);
    this.target = { host: hostname, port: Number(port) };
    return `nats://127.0.0.1:${this.port}`;
  }

  cut(refuseForMs: number): void {
    this.refuseUntil = Date.now() + refuseForMs;
    for (const [a, b] of this.pairs) {
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    this.pairs.clear();
  }

  hold(): void {
    if (this.holding) return;
    this.holding = true;
    // Unpiped and paused, a socket is not read: bytes wait in the kernel's buffers.
    for (const [a, b] of this.pairs) {
      a.unpipe(b);
      b.unpipe(a);
      a.pause();
      b.pause();
    }
  }

  heal(): void {
    this.refuseUntil = 0;
    if (!this.holding) return;
    this.holding = false;
    for (const [a, b] of this.pairs) {
      a.pipe(b);
      b.pipe(a);
    }
  }

  async close(): Promise<void> {
    this.cut(0);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    const target = this.target;
    if (!target || Date.now() < this.refuseUntil) {
      client.resetAndDestroy();
      return;
    }
    const upstream = tcpConnect(target.port, target.host);
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of pair) {
      socket.on('error', end);
      socket.on('close', end);
    }
    if (!this.holding) {
      client.pipe(upstream);
      upstream.pipe(client);
    }
  }
}
