import type { ServerResponse } from 'node:http';
import {
  answerNodeRequest,
  BodyBudget,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_BODY_BYTES_IN_FLIGHT,
  type NodeRequest,
} from '../http/node-server.ts';
import type { ServiceHandler } from '../http/service-handler.ts';

/**
 * `baton/node`: Baton's endpoints as `node:http` middleware — for Express,
 * Connect, NestJS (Express platform) and a plain `http.createServer`.
 *
 *   app.use(batonMiddleware(baton.httpHandler({ auth })));   // before body parsers
 *
 * Requests under the handler's base path (`/baton` by default) are answered
 * here; every other request goes to `next()` (or gets a 404 without one). The
 * body is read only for Baton's own paths, and the target checked against the
 * signature is the one the client sent (`originalUrl`, whatever the mount).
 * Mount it before body parsers, or keep raw bodies (NestJS `rawBody: true`);
 * otherwise a POST is refused with a message that says so.
 */
export interface BatonMiddlewareOptions {
  /** Largest request body read (413 beyond). Default 1 MiB. */
  maxBodyBytes?: number;
  /** Body bytes held at once by this middleware, all requests together (503 beyond). Default 64 MiB. */
  maxBodyBytesInFlight?: number;
}

export type BatonMiddleware = (
  req: NodeRequest,
  res: ServerResponse,
  next?: (error?: unknown) => void,
) => void;

export function batonMiddleware(
  handler: ServiceHandler,
  options: BatonMiddlewareOptions = {},
): BatonMiddleware {
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const budget = new BodyBudget(options.maxBodyBytesInFlight ?? DEFAULT_MAX_BODY_BYTES_IN_FLIGHT);
  const answer = (request: Parameters<ServiceHandler['handle']>[0], signal: AbortSignal) =>
    handler.handle(request, signal);
  return (req, res, next) => {
    const target = req.originalUrl ?? req.url ?? '/';
    if (!isUnder(target, handler.basePath)) {
      if (next) next();
      else res.writeHead(404).end();
      return;
    }
    void answerNodeRequest(req, res, answer, {
      maxBodyBytes,
      refuseEarly: handler.refuseEarly,
      budget,
    });
  };
}

/** Whether a request target's path is `basePath` or below it. */
export function isUnder(target: string, basePath: string): boolean {
  const path = target.split('?', 1)[0] as string;
  return path === basePath || path.startsWith(`${basePath}/`);
}
