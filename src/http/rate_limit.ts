/**
 * Per-client token bucket, pure and clock-driven: each client may spend
 * `ratePerSecond` requests per second with a burst of `burst` (RATE_LIMIT_BURST,
 * default 10). At most `maxClients` are remembered: the least recently seen
 * client is forgotten first (it comes back with a full bucket).
 */
import { type Clock, systemClock } from "../clock.ts";

/** Bucket size when none is given (RATE_LIMIT_BURST's default). */
export const DEFAULT_RATE_LIMIT_BURST = 10;

/** Options of `RateLimiter`. */
export interface RateLimiterOptions {
  /** Tokens added per second. */
  ratePerSecond: number;
  /** Bucket size: requests a client may send at once. Default `DEFAULT_RATE_LIMIT_BURST`. */
  burst?: number;
  /** Time source. Default `Date.now`. */
  clock?: Clock;
  /** Most clients remembered at once. Default 10000. */
  maxClients?: number;
}

/** Outcome of one `take`. */
export interface RateDecision {
  allowed: boolean;
  /** Seconds until a token is available (0 when allowed). */
  retryAfterSeconds: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** A token bucket per client key. */
export class RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #clock: Clock;
  readonly #max: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: RateLimiterOptions) {
    if (!(options.ratePerSecond > 0)) throw new RangeError("ratePerSecond must be above 0");
    this.#rate = options.ratePerSecond;
    this.#burst = options.burst ?? DEFAULT_RATE_LIMIT_BURST;
    if (!(this.#burst >= 1)) throw new RangeError("burst must be at least 1");
    this.#clock = options.clock ?? systemClock;
    this.#max = options.maxClients ?? 10_000;
  }

  /** Spends one token of `client` when it has one. */
  take(client: string): RateDecision {
    const now = this.#clock();
    let b = this.#buckets.get(client);
    if (b) {
      b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) / 1000) * this.#rate);
      b.at = now;
      // Refresh its place in insertion order (most recent last).
      this.#buckets.delete(client);
    } else {
      b = { tokens: this.#burst, at: now };
      if (this.#buckets.size >= this.#max) this.#evict();
    }
    this.#buckets.set(client, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { allowed: true, retryAfterSeconds: 0 };
    }
    const wait = (1 - b.tokens) / this.#rate;
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(wait)) };
  }

  /** Clients currently remembered. */
  get size(): number {
    return this.#buckets.size;
  }

  #evict(): void {
    // Map order is least recently seen first (take() re-inserts the client it serves).
    for (const key of this.#buckets.keys()) {
      if (this.#buckets.size < this.#max) break;
      this.#buckets.delete(key);
    }
  }
}
