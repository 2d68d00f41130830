/**
 * Retry delays as OPA's util.DefaultBackoff computes them: from 100 ms, times 1.6 per retry, up
 * to a maximum, with ±20% jitter so replicas do not retry in step. Shared by the bundle client
 * and the decision-log shipper.
 */
const MIN_RETRY_DELAY_MS = 100;
const BACKOFF_FACTOR = 1.6;
const BACKOFF_JITTER = 0.2;

/** The delay before retry number `retries` (0 = first retry), as OPA's util.DefaultBackoff. */
export function backoffDelayMs(retries: number, maxMs: number, random: () => number = Math.random): number {
  let delay = MIN_RETRY_DELAY_MS;
  if (retries === 0) return delay;
  for (let left = retries; delay < maxMs && left > 0; left--) delay *= BACKOFF_FACTOR;
  delay = Math.min(delay, maxMs);
  delay *= 1 + BACKOFF_JITTER * (random() * 2 - 1);
  return Math.max(MIN_RETRY_DELAY_MS, Math.round(delay));
}
