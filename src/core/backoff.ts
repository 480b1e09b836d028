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
