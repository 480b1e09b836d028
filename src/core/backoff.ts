export interface BackoffPolicy {
  /** Delay before the first retry. */
  baseMs: number;
  /** Upper bound of any delay. */
  maxMs: number;
}

/**
 * Exponential backoff with "equal jitter": half the exponential delay is
 * fixed, half random, so retries of many keys spread out but never come
 * sooner than half the intended delay. `attempt` counts failures so far (1 =
 * first failure).
 */
export function backoffDelay(
  policy: BackoffPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(40, Math.max(0, attempt - 1)));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/**
 * The delay before retrying after `error`: what the error asked for
 * (`RetryableError`'s `retryAfterMs` — a 429's Retry-After, say) when it
 * names a finite, non-negative number of milliseconds, else the backoff.
 * One rule for consumers, saga steps and compensations.
 */
export function retryDelay(
  error: unknown,
  policy: BackoffPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const asked = (error as { retryAfterMs?: unknown } | null)?.retryAfterMs;
  return typeof asked === 'number' && Number.isFinite(asked) && asked >= 0
    ? asked
    : backoffDelay(policy, attempt, random);
}
