import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HttpRequestLike, HttpResponseLike } from './http-types.ts';
import { errorResponse } from './http-types.ts';
import type { RequestHead, ServiceHandler } from './service-handler.ts';

export interface NodeHttpServerOptions {
  port?: number;
  /** Loopback by default; set `0.0.0.0` deliberately to expose it. */
  host?: string;
  /** Request bodies larger than this get 413. */
  maxBodyBytes?: number;
  /** Connections held at once; more are refused by the kernel's backlog (default 1,000). */
  maxConnections?: number;
  /** Time to receive a request's headers (default 10 s): a slow-headers client is cut off. */
  headersTimeoutMs?: number;
  /** Time to receive a whole request, body included (default 30 s): a slow-body client is cut off. Answers (long-polls) are not limited by it. */
  requestTimeoutMs?: number;
  /** Refuses a request before its body is read (see `ServiceHandler.refuseEarly`). */
  refuseEarly?: (head: RequestHead) => HttpResponseLike | undefined;
  /**
   * Bytes of request bodies held at once, all connections together (default
   * 64 MiB). A body is held until its signature can be checked; past this,
   * a request is answered 503 with Retry-After instead of held — so a flood
   * of slow bodies under well-formed (but false) signatures cannot take the
   * process's memory.
   */
  maxBodyBytesInFlight?: number;
}

/** The bytes of request bodies held now, against a cap shared by all of a server's connections. */
export class BodyBudget {
  held = 0;
  constructor(readonly max: number) {}
}

/** Default cap of request-body bytes held at once (64 MiB). */
export const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT = 64 * 1024 * 1024;

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
  handler: RequestHandler | ServiceHandler,
  options: NodeHttpServerOptions = {},
): Promise<RunningServer> {
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const answer: RequestHandler =
    typeof handler === 'function' ? handler : (request, signal) => handler.handle(request, signal);
  const refuseEarly =
    options.refuseEarly ?? (typeof handler === 'function' ? undefined : handler.refuseEarly);
  const budget = new BodyBudget(options.maxBodyBytesInFlight ?? DEFAULT_MAX_BODY_BYTES_IN_FLIGHT);
  const server = createServer(
    {
      headersTimeout: options.headersTimeoutMs ?? 10_000,
      requestTimeout: options.requestTimeoutMs ?? 30_000,
      // How often those two are checked (Node's default, 30 s, would let a slow client stay that much longer).
      connectionsCheckingInterval: 1_000,
    },
    (req, res) => {
      void answerNodeRequest(req, res, answer, { maxBodyBytes, refuseEarly, budget });
    },
  );
  server.keepAliveTimeout = 65_000;
  server.maxConnections = options.maxConnections ?? 1_000;
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

/** Largest request body Baton reads by default (1 MiB): its own requests are far smaller. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** A `node:http` request as frameworks hand it on: maybe mounted, maybe with its body read already. */
export type NodeRequest = IncomingMessage & {
  /** Express/Connect: the target before a mount path was stripped (what the client signed). */
  originalUrl?: string;
  /** NestJS (`rawBody: true`) and others: the body as received. */
  rawBody?: unknown;
};

/**
 * Answers one `node:http` request with `handler`: reads at most
 * `maxBodyBytes` (or takes a raw body a framework kept), aborts the handler
 * when the client goes away, and never lets a handler error escape (500).
 * The request target is the one the client sent (`originalUrl` under a mount).
 */
export async function answerNodeRequest(
  req: NodeRequest,
  res: ServerResponse,
  handler: RequestHandler,
  options: {
    maxBodyBytes: number;
    refuseEarly?: ((head: RequestHead) => HttpResponseLike | undefined) | undefined;
    /** The cap on body bytes held at once, shared with the other requests of this server. */
    budget: BodyBudget;
  },
): Promise<void> {
  const controller = new AbortController();
  res.on('close', () => controller.abort());
  const early = options.refuseEarly?.(toRequest(req, Buffer.alloc(0)));
  if (early) {
    answerEarly(req, res, early, options.maxBodyBytes * DRAIN_FACTOR);
    return;
  }
  let response: HttpResponseLike;
  const held = { bytes: 0 };
  try {
    const body = await bodyOf(req, options.maxBodyBytes, options.budget, held);
    // Too large: 413 once the excess is drained (or at once past the drain
    // cap); the answer closes the connection, so an endless body cannot hold it.
    response =
      body === 'too-large'
        ? tooLarge(options.maxBodyBytes)
        : body === 'busy'
          ? busy(options.budget.max)
          : body === 'consumed'
            ? BODY_CONSUMED
            : await handler(toRequest(req, body), controller.signal);
  } catch {
    response = errorResponse(500, 'BATON_INTERNAL', 'internal error; see the server log');
  } finally {
    options.budget.held -= held.bytes;
  }
  if (res.destroyed) return;
  writeAnswer(res, response);
}

/**
 * Writes an answer; one Node refuses to write (a header holding a line break
 * or another character not allowed there, built from a request's data) is
 * a 500 instead — never an exception that ends the process.
 */
function writeAnswer(
  res: ServerResponse,
  response: HttpResponseLike,
  extra: Record<string, string> = {},
): void {
  let head: { status: number; headers: Record<string, string>; body: string } = {
    status: response.status,
    headers: { ...response.headers, ...extra },
    body: response.body,
  };
  try {
    res.writeHead(head.status, head.headers);
  } catch {
    const internal = errorResponse(
      500,
      'BATON_INTERNAL',
      'internal error: the answer could not be written',
    );
    head = { status: 500, headers: { ...internal.headers, ...extra }, body: internal.body };
    res.writeHead(head.status, head.headers);
  }
  res.end(head.body);
}

/**
 * Answers a request refused on its head. Its body is never kept or parsed:
 * it is read and dropped (a client writing its body cannot read an answer
 * given under it — closing on unread bytes resets the connection), and the
 * answer follows its end. A body announced or found over `cap` (the drain
 * cap of a 413) gets the answer at once with the connection closed; the
 * request timeout bounds a slow one.
 */
function answerEarly(
  req: NodeRequest,
  res: ServerResponse,
  response: HttpResponseLike,
  cap: number,
): void {
  let answered = false;
  const answer = (close: boolean) => {
    if (answered || res.destroyed) return;
    answered = true;
    writeAnswer(res, response, close ? { connection: 'close' } : {});
  };
  const announced = Number(req.headers['content-length'] ?? '0');
  if (!(announced <= cap) || req.readableEnded) {
    answer(!(announced <= cap));
    return;
  }
  let seen = 0;
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > cap) answer(true);
  });
  req.on('end', () => answer(false));
  req.resume();
}

/** A body parser ran first and kept no raw body: the signature cannot be checked. */
const BODY_CONSUMED = errorResponse(
  500,
  'BATON_BODY_CONSUMED',
  "a body parser read this request before Baton and kept no raw body, so its signature cannot be checked: mount Baton's middleware before body parsers (app.use(batonMiddleware(…)) first), or keep raw bodies (NestJS: NestFactory.create(AppModule, { rawBody: true }))",
);

/** The raw body: kept by a framework, or read here; 'consumed' when neither can be had. */
async function bodyOf(
  req: NodeRequest,
  limit: number,
  budget: BodyBudget,
  held: { bytes: number },
): Promise<Buffer | 'too-large' | 'consumed' | 'busy'> {
  if (Buffer.isBuffer(req.rawBody)) return req.rawBody.length > limit ? 'too-large' : req.rawBody;
  if (req.readableEnded)
    return req.method === 'GET' || req.method === 'HEAD' ? Buffer.alloc(0) : 'consumed';
  return readBody(req, limit, budget, held);
}

function busy(max: number): HttpResponseLike {
  const response = errorResponse(
    503,
    'BATON_BUSY',
    `request bodies of ${max} bytes are held already (waiting for their ends); retry in a second`,
  );
  return { ...response, headers: { ...response.headers, connection: 'close', 'retry-after': '1' } };
}

function tooLarge(maxBodyBytes: number): HttpResponseLike {
  const response = errorResponse(
    413,
    'BATON_TOO_LARGE',
    `request body is over ${maxBodyBytes} bytes`,
  );
  return { ...response, headers: { ...response.headers, connection: 'close' } };
}

function toRequest(req: NodeRequest, body: Buffer): HttpRequestLike {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return { method: req.method ?? 'GET', url: req.originalUrl ?? req.url ?? '/', headers, body };
}

/**
 * Reads the body up to `limit`. Past it, the rest is read and thrown away —
 * so a client still writing can then read the 413 — but only up to
 * `DRAIN_FACTOR × limit`: an endless or huge body gets its 413 at that point
 * and the connection is closed under it.
 */
function readBody(
  req: IncomingMessage,
  limit: number,
  budget: BodyBudget,
  held: { bytes: number },
): Promise<Buffer | 'too-large' | 'busy'> {
  const drainCap = limit * DRAIN_FACTOR;
  if (Number(req.headers['content-length'] ?? '0') > drainCap) return Promise.resolve('too-large');
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        // Held until the request is answered: counted against the server's budget.
        if (budget.held + chunk.length > budget.max) {
          chunks.length = 0;
          req.pause();
          return resolve('busy');
        }
        budget.held += chunk.length;
        held.bytes += chunk.length;
        chunks.push(chunk);
      } else if (size > drainCap) resolve('too-large');
    });
    req.on('end', () => resolve(size > limit ? 'too-large' : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const DRAIN_FACTOR = 16;
