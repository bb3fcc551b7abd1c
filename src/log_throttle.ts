/**
 * A log throttle, pure: says whether a line about a recurring problem should
 * be written now, at most once per interval for each key (e.g. a loop and the
 * reason it failed), and how many were held back since the last one written.
 */
import { type Clock, systemClock } from "./clock.ts";

/** Options of `LogThrottle`. */
export interface LogThrottleOptions {
  /** Least time between two lines of one key (ms). Default 60000. */
  intervalMs?: number;
  /** Default: the system clock. */
  clock?: Clock;
  /** Keys remembered at most; the oldest is forgotten past it. Default 1000. */
  maxKeys?: number;
}

/** Once-per-interval gate per key. */
export class LogThrottle {
  readonly #intervalMs: number;
  readonly #clock: Clock;
  readonly #maxKeys: number;
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(options: LogThrottleOptions = {}) {
    this.#intervalMs = options.intervalMs ?? 60_000;
    this.#clock = options.clock ?? systemClock;
    this.#maxKeys = options.maxKeys ?? 1000;
  }

  /**
   * Undefined when a line for `key` was written within the interval (this one
   * is held back); else the number of lines held back since, and the caller
   * writes this one.
   */
  take(key: string): number | undefined {
    const now = this.#clock();
    const last = this.#last.get(key);
    if (last && now - last.at < this.#intervalMs) {
      last.suppressed++;
      return undefined;
    }
    const suppressed = last?.suppressed ?? 0;
    this.#last.delete(key);
    this.#last.set(key, { at: now, suppressed: 0 });
    if (this.#last.size > this.#maxKeys) this.#last.delete(this.#last.keys().next().value!);
    return suppressed;
  }
}

/** A short, stable reason for an error: the Redis error code or the error's name. */
export function errorReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = /^([A-Z][A-Z_]{2,30})\b/.exec(message)?.[1];
  if (code) return code;
  return err instanceof Error ? err.name : "Error";
}
