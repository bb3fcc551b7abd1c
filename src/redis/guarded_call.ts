/**
 * One guarded call to Redis, the same for a single connection
 * (`ConnectionManager`) and a cluster (`ClusterConnection`): the circuit
 * breaker, the deadline the service keeps itself (node-redis stops timing a
 * command once it is written), the observer of command durations, and what a
 * failure becomes for callers: a Redis error reply passes through (Redis is
 * up), a connection failure becomes `NotConnectedError` when nothing was sent
 * or `OutcomeUnknownError` when the commands were on their way.
 */
import { withDeadline } from "../clock.ts";
import { errorInfo, type Logger } from "../log.ts";
import type { Config } from "../config.ts";
import { CircuitBreaker, type CircuitState } from "./breaker.ts";
import { classifyError, NotConnectedError, OutcomeUnknownError } from "./errors.ts";

/** Observer of Redis command outcomes (metrics). */
export interface CommandObserver {
  command(durationSeconds: number, ok: boolean): void;
  state(up: boolean, circuit: CircuitState): void;
}

/** node-redis errors that mean the command never left the process. */
const NEVER_SENT = new Set(["ClientClosedError", "ClientOfflineError"]);

/** Options of `guardedCall`. */
export interface GuardedCallOptions<C> {
  breaker: CircuitBreaker;
  observer?: CommandObserver;
  /** The whole call must settle within this (ms). */
  deadlineMs: number;
  /** The client to call with; throws (`NotConnectedError`) while there is none. */
  client: () => C;
  /** How a failure counts. Default `classifyError`. */
  classify?: (err: unknown) => "reply" | "connection" | "other";
  /** Told of a connection failure, with its message, before the caller's error is thrown. */
  onConnectionFailure: (err: unknown, message: string) => void;
}

/** Runs `fn` with the client, guarded as the module comment says. */
export async function guardedCall<C, T>(
  opts: GuardedCallOptions<C>,
  fn: (client: C) => Promise<T>,
): Promise<T> {
  opts.breaker.acquire();
  let client: C;
  try {
    client = opts.client();
  } catch (err) {
    // Known to be disconnected: failing fast already, no call was made. Release a half-open
    // trial without judging it; the reconnect loop decides.
    opts.breaker.release();
    throw err;
  }
  const started = performance.now();
  // Once `fn` ran, its commands are on their way: a failure from here on leaves their outcome
  // unknown.
  let sent = false;
  try {
    const running = fn(client);
    sent = true;
    const result = await withDeadline(running, opts.deadlineMs);
    opts.breaker.recordSuccess();
    opts.observer?.command((performance.now() - started) / 1000, true);
    return result;
  } catch (err) {
    opts.observer?.command((performance.now() - started) / 1000, false);
    const kind = (opts.classify ?? classifyError)(err);
    if (kind === "reply") {
      // Redis answered (WRONGTYPE, NOGROUP, a script error…): it is up.
      opts.breaker.recordSuccess();
      throw err;
    }
    if (kind === "other") throw err; // a bug of ours, not a Redis failure
    opts.breaker.recordFailure();
    const message = errorInfo(err).message;
    opts.onConnectionFailure(err, message);
    throw sent && !NEVER_SENT.has((err as Error).name)
      ? new OutcomeUnknownError(message, { cause: err })
      : new NotConnectedError(message, { cause: err });
  }
}

/** The circuit breaker of a connection: CIRCUIT_FAILURE_THRESHOLD, CIRCUIT_RESET_MS. */
export function connectionBreaker(
  redis: Config["redis"],
  log: Logger,
  onChange: () => void,
): CircuitBreaker {
  return new CircuitBreaker({
    failureThreshold: redis.circuitFailureThreshold,
    resetMs: redis.circuitResetMs,
    onStateChange: (from, to) => {
      log.warn("Circuit breaker {from} -> {to}", { from, to });
      onChange();
    },
  });
}
