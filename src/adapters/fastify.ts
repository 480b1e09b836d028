import { DEFAULT_MAX_BODY_BYTES } from '../http/node-server.ts';
import type { ServiceHandler } from '../http/service-handler.ts';

/**
 * `baton/fastify`: Baton's endpoints as a Fastify plugin:
 *
 *   await app.register(batonFastify(baton.httpHandler({ auth })));
 *
 * The plugin is encapsulated: inside it, and only there, every content type
 * is kept as a raw Buffer (the signature covers the exact bytes); the app's
 * own JSON parsing is untouched. Register it without a `prefix`: the
 * handler's base path (`/baton`) is where the routes go.
 */
export interface BatonFastifyOptions {
  /** Largest request body read (413 beyond). Default 1 MiB. */
  maxBodyBytes?: number;
}

/** The part of a Fastify instance the plugin uses (so Fastify stays an optional dependency). */
export interface FastifyLike {
  removeAllContentTypeParsers(): void;
  addContentTypeParser(
    contentType: string,
    options: { parseAs: 'buffer'; bodyLimit: number },
    parser: (
      request: unknown,
      body: Buffer,
      done: (error: Error | null, body?: Buffer) => void,
    ) => void,
  ): void;
  route(options: {
    method: string[];
    url: string;
    handler: (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown>;
  }): unknown;
}

interface FastifyRequestLike {
  raw: { method?: string; url?: string; headers: Record<string, string | string[] | undefined> };
  body?: unknown;
}

interface FastifyReplyLike {
  raw: { once(event: 'close', listener: () => void): unknown };
  code(status: number): FastifyReplyLike;
  headers(values: Record<string, string>): FastifyReplyLike;
  send(payload: string): FastifyReplyLike;
}

export function batonFastify(
  handler: ServiceHandler,
  options: BatonFastifyOptions = {},
): (instance: FastifyLike) => Promise<void> {
  const bodyLimit = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  return async (instance) => {
    instance.removeAllContentTypeParsers();
    instance.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (_request, body, done) =>
      done(null, body),
    );
    instance.route({
      method: ['GET', 'POST'],
      url: `${handler.basePath}/*`,
      handler: async (request, reply) => {
        const controller = new AbortController();
        reply.raw.once('close', () => controller.abort());
        const headers: Record<string, string | undefined> = {};
        for (const [name, value] of Object.entries(request.raw.headers))
          headers[name] = Array.isArray(value) ? value.join(', ') : value;
        const response = await handler.handle(
          {
            method: request.raw.method ?? 'GET',
            url: request.raw.url ?? '/',
            headers,
            body: Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0),
          },
          controller.signal,
        );
        return reply.code(response.status).headers(response.headers).send(response.body);
      },
    });
  };
}
