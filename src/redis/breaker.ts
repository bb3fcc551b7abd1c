/**
 * Circuit breaker for Redis operations, pure and clock-driven (README: Configuration, CIRCUIT_*):
 * `failureThreshold` consecutive failures open it; after `resetMs` it lets one
 * call through (half-open); that call's success closes it, its failure opens
 * it again. Option names follow Deno std's `async/unstable_circuit_breaker.ts`.
 */
import { type Clock, systemClock } from "../clock.ts";

/** The breaker's state. */
export type CircuitState = "closed" | "open" | "half_open";

/** Thrown instead of calling Redis while the breaker is open. */
export class CircuitOpenError extends Error {
  /** Milliseconds until a trial call is let through. */
  readonly retryAfterMs: number;
  constructor(retryAfterMs: number) {
    super("Circuit breaker is open: Redis calls are failing fast");
    this.name = "CircuitOpenError";
    this.retryAfterMs = retryAfterMs;
  }
}

/** Options of `CircuitBreaker`. */
export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit. Default 5. */
  failureThreshold?: number;
  /** Milliseconds from open to half-open. Default 30000. */
  resetMs?: number;
  /** Time source. Default `Date.now`. */
  clock?: Clock;
  /** Called on every state change. */
  onStateChange?: (from: CircuitState, to: CircuitState) => void;
}

/** A consecutive-failure circuit breaker. */
export class CircuitBreaker {
  readonly #threshold: number;
  readonly #resetMs: number;
  readonly #clock: Clock;
  readonly #onChange?: (from: CircuitState, to: CircuitState) => void;
  #state: CircuitState = "closed";
  #failures = 0;
  #openedAt = 0;
  #trialInFlight = false;

  constructor(options: CircuitBreakerOptions = {}) {
    const { failureThreshold = 5, resetMs = 30_000, clock = systemClock } = options;
    if (!Number.isInteger(failureThreshold) || failureThreshold < 1) {
      throw new RangeError("failureThreshold must be an integer of at least 1");
    }
    if (!(resetMs >= 0)) throw new RangeError("resetMs must be 0 or more");
    this.#threshold = failureThreshold;
    this.#resetMs = resetMs;
    this.#clock = clock;
    this.#onChange = options.onStateChange;
  }

  /** Current state; an open breaker whose reset time passed reads as half-open. */
  get state(): CircuitState {
    if (this.#state === "open" && this.#clock() - this.#openedAt >= this.#resetMs) {
      this.#transition("half_open");
    }
    return this.#state;
  }

  /** Consecutive failures counted so far. */
  get failures(): number {
    return this.#failures;
  }

  /** Milliseconds until an open breaker lets a trial call through (0 otherwise). */
  retryAfterMs(): number {
    if (this.state !== "open") return 0;
    return Math.max(0, this.#resetMs - (this.#clock() - this.#openedAt));
  }

  /**
   * Asks to make one call. Returns normally when allowed, throws
   * `CircuitOpenError` when not. In half-open only one trial runs at a time.
   */
  acquire(): void {
    const state = this.state;
    if (state === "closed") return;
    if (state === "half_open" && !this.#trialInFlight) {
      this.#trialInFlight = true;
      return;
    }
    throw new CircuitOpenError(Math.max(this.retryAfterMs(), state === "half_open" ? 1000 : 0));
  }

  /** Records a successful call: resets the count and closes the breaker. */
  recordSuccess(): void {
    this.#failures = 0;
    this.#trialInFlight = false;
    if (this.#state !== "closed") this.#transition("closed");
  }

  /** Gives back an acquired call that was never made (no success, no failure). */
  release(): void {
    this.#trialInFlight = false;
  }

  /** Records a failed call: opens the breaker at the threshold or after a failed trial. */
  recordFailure(): void {
    this.#failures++;
    const wasTrial = this.#trialInFlight;
    this.#trialInFlight = false;
    if (this.#state === "half_open" || wasTrial || this.#failures >= this.#threshold) {
      this.#openedAt = this.#clock();
      if (this.#state !== "open") this.#transition("open");
    }
  }

  #transition(to: CircuitState): void {
    const from = this.#state;
    this.#state = to;
    this.#onChange?.(from, to);
  }
}
