import { InvalidInputError, TransportError } from '../core/errors.ts';
import { inSpan, SpanKind, traceHeaders } from '../core/tracing.ts';
import { answerProblem, authHeaders, type ClientAuth } from './auth.ts';

/**
 * The one HTTP client every Baton caller uses to talk to another service's
 * Baton endpoints (feed, owner lookups and set sides, participant calls):
 * each request signed, each answer read as a stream and stopped at its
 * limit, every failure one of four kinds — each a `TransportError` with a
 * stable code:
 *
 * | code                     | when                                          | retryable |
 * |--------------------------|-----------------------------------------------|-----------|
 * | BATON_PEER_UNREACHABLE   | no answer: refused, reset, timed out, aborted; an answer failing its signature check; or this request refused as a replay (a copy of it arrived first, so it may have run) | yes |
 * | BATON_PEER_FAILED        | 5xx or 429 (the peer could not do it now)     | yes       |
 * | BATON_PEER_REFUSED       | any other non-2xx (it will not do it)         | no        |
 * | BATON_PEER_PROTOCOL      | an answer over the limit, or not what Baton sends | no   |
 */
export interface SignedClientOptions {
  /** The peer in messages, e.g. `participant loyalty`. */
  name: string;
  /** The peer's service name: requests are signed for it (`keys` auth). Default `name`. */
  peer?: string;
  /** Base URL of its Baton endpoints, e.g. `http://customers:8080/baton`. */
  url: string;
  auth: ClientAuth;
  /** Per request, unless a call says otherwise. Default 10 s. */
  timeoutMs?: number;
  /** Largest answer read, unless a call says otherwise. Default 16 MiB. */
  maxResponseBytes?: number;
}

export interface SignedRequest {
  /** JSON body (serialised here), or raw bytes. */
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
  signal?: AbortSignal;
  maxResponseBytes?: number;
}

export interface SignedResponse {
  status: number;
  body: Buffer;
  /** Bytes of the request body and the answer body (for traffic figures). */
  requestBytes: number;
}

export interface SignedClient {
  readonly name: string;
  /** The base URL, without a trailing slash. */
  readonly url: string;
  /** One signed request to `path` under the base URL; any status comes back as it is. */
  request(method: 'GET' | 'POST', path: string, options?: SignedRequest): Promise<SignedResponse>;
  /**
   * A request whose answer must be 2xx JSON: the parsed body, or the failure
   * by its kind (see above), with the peer's own reason when it gave one.
   */
  json<T = unknown>(method: 'GET' | 'POST', path: string, options?: SignedRequest): Promise<T>;
}

export class PeerError extends TransportError {
  constructor(
    code:
      | 'BATON_PEER_UNREACHABLE'
      | 'BATON_PEER_FAILED'
      | 'BATON_PEER_REFUSED'
      | 'BATON_PEER_PROTOCOL',
    message: string,
    /** The HTTP status, when the peer answered. */
    readonly status?: number,
    /** The peer's own error code (`error.code` of its body), when it gave one. */
    readonly peerCode?: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, {
      code,
      retryable: code === 'BATON_PEER_UNREACHABLE' || code === 'BATON_PEER_FAILED',
      cause: options.cause,
    });
  }
}

export function signedClient(options: SignedClientOptions): SignedClient {
  let base: URL;
  try {
    base = new URL(options.url.replace(/\/?$/, '/'));
  } catch {
    throw new InvalidInputError(`${options.name}: url "${options.url}" is not a valid URL`);
  }
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxResponseBytes = options.maxResponseBytes ?? 16 * 1024 * 1024;

  async function request(
    method: 'GET' | 'POST',
    path: string,
    call: SignedRequest = {},
  ): Promise<SignedResponse> {
    const url = new URL(path, base);
    const body =
      call.body === undefined
        ? undefined
        : Buffer.isBuffer(call.body)
          ? call.body
          : Buffer.from(JSON.stringify(call.body));
    const target = `${url.pathname}${url.search}`;
    const peer = options.peer ?? options.name;
    return inSpan(
      method,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'http.request.method': method,
          'server.address': url.hostname,
          'server.port': Number(url.port || 80),
          'url.full': `${url.origin}${url.pathname}`,
          'baton.peer': peer,
        },
      },
      async (span) => {
        const answer = await exchange(method, url, target, body, call, peer);
        span.setAttribute('http.response.status_code', answer.status);
        return answer;
      },
    );
  }

  /** One request and its checked answer (inside the client span, whose context it carries). */
  async function exchange(
    method: 'GET' | 'POST',
    url: URL,
    target: string,
    body: Buffer | undefined,
    call: SignedRequest,
    peer: string,
  ): Promise<SignedResponse> {
    const timeout = AbortSignal.timeout(call.timeoutMs ?? timeoutMs);
    const signature = authHeaders(options.auth, {
      method,
      target,
      body,
      audience: peer,
      idempotencyKey: call.headers?.['idempotency-key'],
    });
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: {
          ...(body && !Buffer.isBuffer(call.body) ? { 'content-type': 'application/json' } : {}),
          ...call.headers,
          ...signature,
          ...traceHeaders(),
        },
        body,
        signal: call.signal ? AbortSignal.any([call.signal, timeout]) : timeout,
      });
    } catch (error) {
      throw new PeerError(
        'BATON_PEER_UNREACHABLE',
        `${options.name} at ${base.origin} did not answer ${method} ${url.pathname}: ${(error as Error).message}`,
        undefined,
        undefined,
        { cause: error },
      );
    }
    const answer = await readLimited(response, call.maxResponseBytes ?? maxResponseBytes, () =>
      describe(method, url),
    );
    const untrusted = answerProblem(options.auth, peer, signature, {
      status: response.status,
      headers: response.headers,
      body: answer,
    });
    // Like a network fault: what came back is not the peer's answer (retryable).
    if (untrusted)
      throw new PeerError(
        'BATON_PEER_UNREACHABLE',
        `${describe(method, url)}: answer refused: ${untrusted}`,
        response.status,
      );
    return { status: response.status, body: answer, requestBytes: body?.length ?? 0 };
  }

  function describe(method: string, url: URL): string {
    return `${options.name} at ${base.origin} (${method} ${url.pathname})`;
  }

  return {
    name: options.name,
    url: base.toString().replace(/\/$/, ''),
    request,
    async json<T>(method: 'GET' | 'POST', path: string, call?: SignedRequest): Promise<T> {
      const answer = await request(method, path, call);
      const text = answer.body.toString('utf8');
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      if (answer.status >= 200 && answer.status < 300) {
        if (parsed === undefined)
          throw new PeerError(
            'BATON_PEER_PROTOCOL',
            `${options.name} answered ${path} with a body that is not JSON`,
            answer.status,
          );
        return parsed as T;
      }
      throw failure(options.name, path, answer.status, parsed, text);
    },
  };
}

/** The failure a non-2xx answer stands for, with the peer's reason when it gave one. */
export function failure(
  peer: string,
  path: string,
  status: number,
  parsed: unknown,
  text: string,
): PeerError {
  const error = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const reason =
    typeof error?.message === 'string' ? error.message.slice(0, 500) : text.slice(0, 200);
  const peerCode = typeof error?.code === 'string' ? error.code : undefined;
  // A replay refusal of a request signed with a fresh nonce means a copy of it
  // got there first (the network duplicated it): the outcome is unknown, not refused.
  const kind =
    peerCode === 'BATON_REPLAYED'
      ? 'BATON_PEER_UNREACHABLE'
      : status >= 500 || status === 429
        ? 'BATON_PEER_FAILED'
        : 'BATON_PEER_REFUSED';
  return new PeerError(
    kind,
    `${peer} answered ${status}${peerCode ? ` ${peerCode}` : ''} to ${path}: ${reason}`,
    status,
    peerCode,
  );
}

/**
 * Reads an answer's body as it arrives and stops at `limit` bytes: a peer
 * sending more is cut off there, never buffered whole.
 */
async function readLimited(
  response: Response,
  limit: number,
  where: () => string,
): Promise<Buffer> {
  const tooLarge = (size: string) =>
    new PeerError(
      'BATON_PEER_PROTOCOL',
      `${where()} answered ${size}, over the limit of ${limit} bytes; ask for less (a smaller batch)`,
      response.status,
    );
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > limit) {
    await response.body?.cancel().catch(() => {});
    throw tooLarge(`${declared} bytes`);
  }
  if (!response.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        throw tooLarge('more');
      }
      chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
    }
  } catch (error) {
    if (error instanceof PeerError) throw error;
    throw new PeerError(
      'BATON_PEER_UNREACHABLE',
      `${where()} broke off its answer: ${(error as Error).message}`,
      response.status,
      undefined,
      { cause: error },
    );
  }
  return Buffer.concat(chunks, size);
}
