import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HttpRequestLike, HttpResponseLike } from './http-types.ts';
import { errorResponse } from './http-types.ts';

export interface NodeHttpServerOptions {
  port?: number;
  /** Loopback by default; set `0.0.0.0` deliberately to expose it. */
  host?: string;
  /** Request bodies larger than this get 413. */
  maxBodyBytes?: number;
}

export type RequestHandler = (
  request: HttpRequestLike,
  signal: AbortSignal,
) => Promise<HttpResponseLike>;

export interface RunningServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/**
 * A ready-made `node:http` server around a framework-agnostic handler. Reads
 * at most `maxBodyBytes`, aborts the handler when the client goes away, and
 * never lets a handler error crash the process (it answers 500).
 */
export async function serveHttp(
  handler: RequestHandler,
  options: NodeHttpServerOptions = {},
): Promise<RunningServer> {
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  const server = createServer(async (req, res) => {
    const controller = new AbortController();
    res.on('close', () => controller.abort());
    let response: HttpResponseLike;
    try {
      const body = await readBody(req, maxBodyBytes);
      // Too large: 413 once the excess is drained (or at once past the drain
      // cap); the answer closes the connection, so an endless body cannot hold it.
      response =
        body === 'too-large'
          ? tooLarge(maxBodyBytes)
          : await handler(toRequest(req, body), controller.signal);
    } catch {
      response = errorResponse(500, 'BATON_INTERNAL', 'internal error; see the server log');
    }
    if (res.destroyed) return;
    res.writeHead(response.status, response.headers);
    res.end(response.body);
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    server,
    url: `http://${address.address}:${address.port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function tooLarge(maxBodyBytes: number): HttpResponseLike {
  const response = errorResponse(
    413,
    'BATON_TOO_LARGE',
    `request body is over ${maxBodyBytes} bytes`,
  );
  return { ...response, headers: { ...response.headers, connection: 'close' } };
}

function toRequest(req: IncomingMessage, body: Buffer): HttpRequestLike {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return { method: req.method ?? 'GET', url: req.url ?? '/', headers, body };
}

/**
 * Reads the body up to `limit`. Past it, the rest is read and thrown away —
 * so a client still writing can then read the 413 — but only up to
 * `DRAIN_FACTOR × limit`: an endless or huge body gets its 413 at that point
 * and the connection is closed under it.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large'> {
  const drainCap = limit * DRAIN_FACTOR;
  if (Number(req.headers['content-length'] ?? '0') > drainCap) return Promise.resolve('too-large');
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else if (size > drainCap) resolve('too-large');
    });
    req.on('end', () => resolve(size > limit ? 'too-large' : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const DRAIN_FACTOR = 16;
