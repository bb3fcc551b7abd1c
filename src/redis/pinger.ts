/**
 * The PING loop behind /health: PINGs Redis every `intervalMs` (and at once
 * whenever the connection comes up), each with its own short deadline, so the
 * health state has a fresh latency and `lastCheck`, and a hung Redis (stopped
 * with SIGSTOP: sockets open, no answer) is noticed: a PING past its deadline
 * makes the connection manager replace the connection (readiness 503
 * `redis_unavailable` until it is back). The forced-reconnect policy for other
 * failures: `failuresBeforeReconnect` failed PINGs in a row on a connection
 * that looks open mean it is not.
 */
import { errorInfo } from "../log.ts";
import type { ConnectionState } from "./connection.ts";

/** What the pinger needs of the connection manager. */
export interface PingTarget {
  readonly connected: boolean;
  ping(timeoutMs: number): Promise<number>;
  forceReconnect(reason: string): void;
  onStateChange(listener: (state: ConnectionState) => void): () => void;
}

/** Options of `Pinger`. */
export interface PingerOptions {
  connection: PingTarget;
  /** Time between PINGs in ms. Default 5000. */
  intervalMs?: number;
  /** How long one PING may take in ms. Default 1000. */
  timeoutMs?: number;
  /** Failed PINGs in a row that force a reconnect. Default 2. */
  failuresBeforeReconnect?: number;
}

/** Most time between PINGs (ms). */
export const MAX_PING_INTERVAL_MS = 5000;
/** Most time one PING may take (ms). */
export const MAX_PING_TIMEOUT_MS = 1000;

/**
 * PING interval and deadline for a CONNECTION_TIMEOUT, pure. A hung Redis is
 * noticed within interval + deadline, which this keeps within
 * CONNECTION_TIMEOUT + 1.5 s (the README promises + 2 s): the deadline is
 * min(1 s, CONNECTION_TIMEOUT), the interval at most 5 s.
 */
export function pingTiming(connectTimeoutMs: number): { intervalMs: number; timeoutMs: number } {
  const timeoutMs = Math.max(1, Math.min(MAX_PING_TIMEOUT_MS, connectTimeoutMs));
  const intervalMs = Math.min(MAX_PING_INTERVAL_MS, connectTimeoutMs + 1500 - timeoutMs);
  return { intervalMs, timeoutMs };
}

/** Runs the PING loop and its forced-reconnect policy. */
export class Pinger {
  readonly #conn: PingTarget;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #threshold: number;
  #failures = 0;
  #timer?: ReturnType<typeof setInterval>;
  #unsubscribe?: () => void;

  constructor(options: PingerOptions) {
    this.#conn = options.connection;
    this.#intervalMs = options.intervalMs ?? 5000;
    this.#timeoutMs = options.timeoutMs ?? 1000;
    this.#threshold = options.failuresBeforeReconnect ?? 2;
    if (!(this.#intervalMs > 0)) throw new RangeError("intervalMs must be greater than 0");
    if (!Number.isInteger(this.#threshold) || this.#threshold < 1) {
      throw new RangeError("failuresBeforeReconnect must be an integer of at least 1");
    }
  }

  /** PINGs once, then every `intervalMs` and on every (re)connection, until `stop()`. */
  async start(): Promise<void> {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => void this.pingOnce(), this.#intervalMs);
    this.#unsubscribe = this.#conn.onStateChange((state) => {
      if (state === "connected") void this.pingOnce();
    });
    await this.pingOnce();
  }

  /** Stops the loop. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  /** One PING (none while disconnected); counts failures and forces a reconnect at the threshold. */
  async pingOnce(): Promise<void> {
    if (!this.#conn.connected) return;
    try {
      await this.#conn.ping(this.#timeoutMs);
      this.#failures = 0;
    } catch (err) {
      if (++this.#failures >= this.#threshold) {
        this.#conn.forceReconnect(`PING failed: ${errorInfo(err).message}`);
      }
    }
  }
}
