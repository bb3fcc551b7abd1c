/**
 * The clock abstraction: pure cores (breaker, backoff, rate limiter) take one
 * so unit tests drive time exactly instead of sleeping.
 */

/** Milliseconds since the epoch, like `Date.now`. */
export type Clock = () => number;

/** The real clock. */
export const systemClock: Clock = () => Date.now();

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Thrown by `withDeadline` when the deadline passes first. Its name is `TimeoutError`. */
export class DeadlineError extends Error {
  /** The deadline that passed, in ms. */
  readonly ms: number;
  constructor(ms: number) {
    super(`Timed out after ${ms} ms`);
    this.name = "TimeoutError";
    this.ms = ms;
  }
}

/**
 * Settles as `p` does, or resolves with `fallback` after `ms` if `p` has not
 * settled by then. `p` itself is not cancelled; the timer is always cleared.
 */
export function raceDeadline<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  // One promise and one timer (not a race of two promises and a `finally`): this runs
  // around every Redis command.
  return new Promise<T | F>((resolve, reject) => {
    const timer = setTimeout(() => resolve(fallback), ms);
    p.then((v) => {
      clearTimeout(timer);
      resolve(v);
    }, (err: unknown) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * Settles as `p` does, or rejects with a `DeadlineError` after `ms`. `p`
 * itself is not cancelled (a rejection it has later is ignored).
 */
export function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      p.catch(() => {}); // settles later; nobody waits for it any more
      reject(new DeadlineError(ms));
    }, ms);
    p.then((v) => {
      clearTimeout(timer);
      resolve(v);
    }, (err: unknown) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
