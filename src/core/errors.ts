/**
 * Every error Baton throws on purpose is a `BatonError` with a stable `code`
 * (`BATON_…`), a `retryable` flag and, where it helps, structured fields.
 * Messages say what happened, with the values, and what to do about it.
 */
export class BatonError extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(
    code: string,
    message: string,
    options: { retryable?: boolean; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** The caller passed something Baton cannot accept (bad option, bad event). Never retried. */
export class InvalidInputError extends BatonError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('BATON_INVALID_INPUT', message, options);
  }
}

/** A payload failed the Standard Schema registered for its event type. */
export class SchemaViolationError extends BatonError {
  constructor(
    readonly eventType: string,
    readonly issues: readonly { message: string; path?: readonly unknown[] }[],
  ) {
    const first = issues
      .slice(0, 3)
      .map((i) => `${formatPath(i.path)}${i.message}`)
      .join('; ');
    super(
      'BATON_SCHEMA_VIOLATION',
      `payload of event type "${eventType}" fails its schema: ${first}. Fix the payload or the schema registered for "${eventType}".`,
    );
  }
}

/** A payload is larger than the configured limit. */
export class PayloadTooLargeError extends BatonError {
  constructor(
    readonly eventType: string,
    readonly bytes: number,
    readonly limitBytes: number,
  ) {
    super(
      'BATON_PAYLOAD_TOO_LARGE',
      `payload of event type "${eventType}" is ${bytes} bytes, over the limit of ${limitBytes}. Publish a reference to the data instead, or raise maxPayloadBytes.`,
    );
  }
}

/** The database server cannot run Baton. */
export class UnsupportedServerError extends BatonError {
  constructor(
    readonly serverVersionNum: number,
    readonly requiredVersionNum: number,
  ) {
    super(
      'BATON_UNSUPPORTED_SERVER',
      `Baton requires PostgreSQL ${requiredVersionNum / 10000} or greater (detected server_version_num = ${serverVersionNum}). Upgrade the server or point Baton at another one.`,
    );
  }
}

/** A feed request was not authenticated. */
export class AuthenticationError extends BatonError {
  constructor(reason: string) {
    super('BATON_UNAUTHENTICATED', reason);
  }
}

/**
 * A feed cursor lies before the oldest position the producer still serves:
 * events after it were pruned before this consumer read them (HTTP 410).
 */
export class CursorExpiredError extends BatonError {
  constructor(
    /** The cursor the producer refused. */
    readonly cursor: string,
    /**
     * The oldest position the producer serves in full: a cursor there reads
     * every event it still has, and loses the ones between `cursor` and it.
     * Undefined if the producer did not say.
     */
    readonly oldestRetained: string | undefined,
  ) {
    super(
      'BATON_CURSOR_EXPIRED',
      `cursor ${cursor} lies before the oldest position the producer still serves (${oldestRetained ?? 'the producer did not say which'}): the events after it were pruned before this consumer read them. Raise the producer's outbox retention; then move the subscription's cursor deliberately (\`baton consumers reset <subscription> --to-oldest\`) and reconcile what it missed.`,
    );
  }
}

/** The transport or the peer failed in a way worth retrying. */
export class TransportError extends BatonError {
  constructor(
    message: string,
    options: { cause?: unknown; retryable?: boolean; code?: string } = {},
  ) {
    super(options.code ?? 'BATON_TRANSPORT', message, {
      retryable: options.retryable ?? true,
      cause: options.cause,
    });
  }
}

/** Nothing found for an id given on the command line or to an API. */
export class NotFoundError extends BatonError {
  constructor(message: string) {
    super('BATON_NOT_FOUND', message);
  }
}

/** Internal invariant: a bug in Baton, not a user mistake. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new BatonError('BATON_INTERNAL', `internal invariant failed: ${message}`);
}

function formatPath(path: readonly unknown[] | undefined): string {
  if (!path || path.length === 0) return '';
  const parts = path.map((p) =>
    typeof p === 'object' && p !== null && 'key' in p
      ? String((p as { key: unknown }).key)
      : String(p),
  );
  return `${parts.join('.')}: `;
}

/**
 * Thrown by a handler (or a saga step) to say: this will never succeed, do
 * not retry. An inbox event becomes a dead letter at once.
 */
export class TerminalError extends BatonError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('BATON_TERMINAL', message, options);
  }
}

/** Thrown to ask for a retry, optionally not before `retryAfterMs`. */
export class RetryableError extends BatonError {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
    options: { cause?: unknown } = {},
  ) {
    super('BATON_RETRYABLE', message, { retryable: true, cause: options.cause });
  }
}

/** COMMIT found the transaction already aborted (a statement in it failed and the error was caught): nothing was written. */
export class TransactionRolledBackError extends BatonError {
  constructor() {
    super(
      'BATON_ROLLED_BACK',
      'the transaction was rolled back at COMMIT because a statement in it had failed (its error was caught inside the transaction). Nothing was written; let the error propagate, or use a savepoint around statements that may fail.',
    );
  }
}

/**
 * Why a reference was refused, for a caller to switch on (e.g. 503 for
 * `owner-unreachable`, 422 for the rest):
 * - `unknown`: the owner has no such entity (or the replica never heard of it);
 * - `deleting` / `deleted`: it is being deleted, or is gone;
 * - `owner-unreachable`: the owner could not be asked (retry later, or
 *   declare the reference with `onOwnerUnreachable: 'accept'`);
 * - `owner-refused`: the owner answered, refusing the lookup;
 * - `invalid-id`: not an id of the entity's key type.
 */
export type ReferenceViolationReason =
  | 'unknown'
  | 'deleting'
  | 'deleted'
  | 'owner-unreachable'
  | 'owner-refused'
  | 'invalid-id';

/** The reason a state word of a check names (what the trigger and the check say). */
function reasonOf(state: string, detail: string): ReferenceViolationReason {
  if (state === 'not a valid id') return 'invalid-id';
  if (state === 'deleting' || state === 'deleted') return state;
  if (state === 'unknown here' && detail.startsWith('its owner could not be asked'))
    return 'owner-unreachable';
  if (state === 'unknown here' && detail.startsWith('its owner refused')) return 'owner-refused';
  return 'unknown';
}

/**
 * A write would make a reference point at an entity that is unknown, being
 * deleted or deleted. Names the referencing table and column, the entity and
 * the id, the state found, and the `reason` to switch on. `retryable` is
 * true only when the owner could not be asked.
 */
export class ReferenceViolation extends BatonError {
  readonly reason: ReferenceViolationReason;

  constructor(
    readonly table: string,
    readonly column: string,
    readonly entity: string,
    readonly id: string,
    readonly state: string,
    detail = '',
  ) {
    const reason = reasonOf(state, detail);
    super(
      'BATON_REFERENCE_VIOLATION',
      `${table}.${column} = ${JSON.stringify(id)} refers to ${entity} ${JSON.stringify(id)}, which is ${state}${detail ? ` (${detail})` : ''}. Reference an existing ${entity}, or create it in its owning service first.`,
      { retryable: reason === 'owner-unreachable' },
    );
    this.reason = reason;
  }
}

/** A saga worker lost its lease (another worker took the saga over): its write was refused. */
export class LeaseLostError extends BatonError {
  constructor(
    readonly sagaId: string,
    readonly fence: number,
  ) {
    super(
      'BATON_LEASE_LOST',
      `saga ${sagaId}: this worker's lease (fence ${fence}) was taken over by another worker; its write was refused and it stops working on the saga.`,
    );
  }
}

/** `sagas.waitFor` gave up: the saga had not settled within the time the caller allowed. */
export class SagaTimeoutError extends BatonError {
  constructor(
    readonly sagaId: string,
    /** The state the saga was in when the wait ended. */
    readonly state: string,
    readonly waitingFor: string | null,
    readonly timeoutMs: number,
  ) {
    super(
      'BATON_SAGA_TIMEOUT',
      `saga ${sagaId} is still ${state} after ${timeoutMs} ms (${waitingFor ?? 'running'}); it goes on — wait again, or look with \`baton sagas show ${sagaId}\`.`,
      { retryable: true },
    );
  }
}

/** A compensation kept failing past its bound: the saga is stuck and waits for an operator. */
export class CompensationFailed extends BatonError {
  constructor(
    readonly sagaId: string,
    readonly step: string,
    readonly attempts: number,
    cause: unknown,
  ) {
    super(
      'BATON_COMPENSATION_FAILED',
      `saga ${sagaId}: compensation of step "${step}" failed ${attempts} times (${(cause as Error)?.message ?? cause}); the saga is stuck. Fix the cause, then run \`baton sagas retry ${sagaId}\`.`,
      { cause },
    );
  }
}
