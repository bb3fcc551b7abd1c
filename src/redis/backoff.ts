/**
 * Backoff schedules, pure. `retryDelay` reads the configured `RETRY_DELAYS`
 * list (the last value repeats); `exponentialBackoff` serves reconnects and
 * handler retries, with optional jitter from an injected random source.
 */

/** Delay after failed attempt `attempt` (1-based) from a configured list. */
export function retryDelay(delays: readonly number[], attempt: number): number {
  if (delays.length === 0) return 0;
  if (!Number.isInteger(attempt) || attempt < 1) {
    throw new RangeError("attempt must be an integer of at least 1");
  }
  return delays[Math.min(attempt, delays.length) - 1];
}

/** Options of `exponentialBackoff`. */
export interface ExponentialBackoffOptions {
  /** First delay in ms. Default 100. */
  minMs?: number;
  /** Largest delay in ms. Default 30000. */
  maxMs?: number;
  /** Growth factor. Default 2. */
  multiplier?: number;
  /** Fraction of the delay randomised (0 to 1). Default 0.2. */
  jitter?: number;
  /** Random source in [0, 1). Default `Math.random`. */
  random?: () => number;
}

/** Delay before retry number `attempt` (1-based): min·multiplier^(attempt-1), capped, jittered. */
export function exponentialBackoff(
  attempt: number,
  options: ExponentialBackoffOptions = {},
): number {
  const { minMs = 100, maxMs = 30_000, multiplier = 2, jitter = 0.2, random = Math.random } =
    options;
  if (!(attempt >= 1)) throw new RangeError("attempt must be at least 1");
  const base = Math.min(maxMs, minMs * Math.pow(multiplier, Math.min(attempt - 1, 64)));
  const spread = base * jitter;
  // Jitter never takes the delay past maxMs (documented as the largest delay).
  return Math.min(maxMs, Math.max(0, Math.round(base - spread + random() * 2 * spread)));
}
