/**
 * Redis errors as the service sees them: the error types callers catch
 * (`RedisUnavailableError` at start, `NotConnectedError` while Redis is away)
 * and `classifyError`, which tells a Redis reply from a connection failure
 * from a bug of ours. Pure.
 */
import { ErrorReply } from "npm:@redis/client@^5.12.1";

/** Raised when the initial connection attempts all failed. */
export class RedisUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RedisUnavailableError";
  }
}

/** Raised by `exec` while no connection is up. */
export class NotConnectedError extends Error {
  constructor(reason?: string, options?: ErrorOptions) {
    super(reason ? `Redis is not connected: ${reason}` : "Redis is not connected", options);
    this.name = "NotConnectedError";
  }
}

/**
 * Raised by `exec` when the command was handed to a live connection and then
 * no answer came (its deadline passed, or the connection failed): it may have
 * taken effect. A `NotConnectedError` too, so that callers that only care
 * whether Redis answered treat it alike; the trigger answers 504 for it.
 */
export class OutcomeUnknownError extends NotConnectedError {
  constructor(reason?: string, options?: ErrorOptions) {
    super(reason, options);
    this.name = "OutcomeUnknownError";
  }
}

const CONNECTION_REPLY_RE = /^(READONLY|LOADING|MASTERDOWN|NOAUTH|WRONGPASS)/;
const CONNECTION_ERROR_NAMES = new Set([
  "ConnectionTimeoutError",
  "SocketTimeoutError",
  "ClientClosedError",
  "ClientOfflineError",
  "DisconnectsClientError",
  "SocketClosedUnexpectedlyError",
  "TimeoutError",
  "AbortError",
  "NotConnectedError",
  "OutcomeUnknownError",
]);

/**
 * `reply`: Redis answered with an error (it is up). `connection`: the
 * connection failed, timed out, or serves a replica / a loading server.
 * `other`: anything else (not Redis' doing).
 */
export function classifyError(err: unknown): "reply" | "connection" | "other" {
  if (err instanceof ErrorReply) {
    return CONNECTION_REPLY_RE.test(err.message) ? "connection" : "reply";
  }
  if (!(err instanceof Error)) return "other";
  if (CONNECTION_ERROR_NAMES.has(err.name) || CONNECTION_ERROR_NAMES.has(err.constructor?.name)) {
    return "connection";
  }
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && /^E[A-Z]+/.test(code)) return "connection"; // ECONNRESET…
  if (/Timed out after|socket|ECONN|EPIPE/i.test(err.message)) return "connection";
  return "other";
}
