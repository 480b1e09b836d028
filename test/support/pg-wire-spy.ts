import net from 'node:net';

/**
 * A TCP relay on loopback between a client and PostgreSQL that reads the
 * client's side of the wire protocol and notes the name of every statement
 * the client prepares (a Parse message with a non-empty name) — what a
 * pooler that cannot keep prepared statements would trip over. Bytes pass
 * through unchanged. Plain connections only (no TLS: the relay reads them).
 */
export interface WireSpy {
  /** `url` with its host and port replaced by the relay's. */
  url: string;
  /** Names of the statements prepared through the relay, in order. */
  prepared: string[];
  close(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSS_ENC_REQUEST = 80877104;

export async function startWireSpy(databaseUrl: string): Promise<WireSpy> {
  const target = new URL(databaseUrl);
  const prepared: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    upstream.pipe(client);
    const reader = frontendReader((name) => prepared.push(name));
    client.on('data', (chunk: Buffer) => {
      reader(chunk);
      upstream.write(chunk);
    });
    client.on('end', () => upstream.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    prepared,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Splits the client's bytes into messages; calls `onPrepare` with each named Parse. */
function frontendReader(onPrepare: (name: string) => void): (chunk: Buffer) => void {
  let buffered = Buffer.alloc(0);
  let startup = true; // the first messages carry no type byte
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      if (startup) {
        if (buffered.length < 8) return;
        const length = buffered.readInt32BE(0);
        if (buffered.length < length) return;
        const code = buffered.readInt32BE(4);
        startup = code === SSL_REQUEST || code === GSS_ENC_REQUEST;
        buffered = buffered.subarray(length);
        continue;
      }
      if (buffered.length < 5) return;
      const type = String.fromCharCode(buffered[0] ?? 0);
      const length = buffered.readInt32BE(1);
      if (buffered.length < 1 + length) return;
      if (type === 'P') {
        const body = buffered.subarray(5, 1 + length);
        const name = body.subarray(0, body.indexOf(0)).toString('utf8');
        if (name) onPrepare(name);
      }
      buffered = buffered.subarray(1 + length);
    }
  };
}
