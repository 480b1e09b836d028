/** A framework-agnostic HTTP request, as Baton's handlers take it. */
export interface HttpRequestLike {
  method: string;
  /** Path with query string, e.g. `/baton/events?after=10`. */
  url: string;
  /** Lower-case header names. */
  headers: Readonly<Record<string, string | undefined>>;
  body?: Buffer;
}

export interface HttpResponseLike {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export function jsonResponse(status: number, value: unknown): HttpResponseLike {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
    body: JSON.stringify(value),
  };
}

/**
 * A 4xx/5xx body: `{ error: { code, message, ...details } }`; the message
 * says what to do, `details` carry what a client needs as values.
 */
export function errorResponse(
  status: number,
  code: string,
  message: string,
  details: Readonly<Record<string, string | number>> = {},
): HttpResponseLike {
  return jsonResponse(status, { error: { ...details, code, message } });
}
