import { DEFAULT_MAX_BODY_BYTES } from '../http/node-server.ts';
import type { ServiceHandler } from '../http/service-handler.ts';

/**
 * `baton/fetch`: Baton's endpoints as a Fetch API handler,
 * `(request: Request) => Promise<Response>` — for Hono, Next.js route
 * handlers, Bun, Deno and anything else built on `Request`/`Response`:
 *
 *   const baton = batonFetch(service.httpHandler({ auth }));
 *   app.all('/baton/*', (c) => baton(c.req.raw));            // Hono
 *
 * The signature covers the request's own path and query, so mount it where
 * the path the client sent is unchanged. The body is read (up to
 * `maxBodyBytes`, 413 beyond, also for a body that lies about its length)
 * only for Baton's own paths.
 */
export interface BatonFetchOptions {
  /** Largest request body read (413 beyond). Default 1 MiB. */
  maxBodyBytes?: number;
}

export function batonFetch(
  handler: ServiceHandler,
  options: BatonFetchOptions = {},
): (request: Request) => Promise<Response> {
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  return async (request) => {
    const url = new URL(request.url);
    const target = `${url.pathname}${url.search}`;
    if (url.pathname !== handler.basePath && !url.pathname.startsWith(`${handler.basePath}/`))
      return new Response(null, { status: 404 });
    const body = await readBody(request, maxBodyBytes);
    if (body === 'too-large')
      return Response.json(
        {
          error: {
            code: 'BATON_TOO_LARGE',
            message: `request body is over ${maxBodyBytes} bytes`,
          },
        },
        { status: 413, headers: { connection: 'close' } },
      );
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => {
      headers[name] = value;
    });
    const response = await handler.handle(
      { method: request.method, url: target, headers, body },
      request.signal,
    );
    return new Response(response.body, { status: response.status, headers: response.headers });
  };
}

/** The body, read chunk by chunk and stopped past `limit`. */
async function readBody(request: Request, limit: number): Promise<Buffer | 'too-large'> {
  if (Number(request.headers.get('content-length') ?? '0') > limit) return 'too-large';
  if (!request.body) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return 'too-large';
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}
