/**
 * ConnectionManager: owns the Redis clients (README: Start-up, shutdown and exit codes). A command
 * client for everything but blocking reads, a dedicated client for
 * XREADGROUP BLOCK, so a blocked read never delays a PING or a publish, and one
 * for commands the service encodes itself (`execBytes`: the consumer's settle
 * calls that carry forwarded entries' bytes as they were read).
 *
 * Initial connection: `maxRetryAttempts` attempts with `retryDelaysMs` between
 * them, a warning after one minute, then `RedisUnavailableError` (main exits 1).
 * After that, a lost connection is re-established forever with exponential
 * backoff; Sentinel is asked for the master again on every attempt. node-redis'
 * own reconnect is off so that state, address resolution and backoff live here.
 * Every operation through `exec` passes the circuit breaker and is timed.
 */
import type { Config } from "../config.ts";
import { delay, withDeadline } from "../clock.ts";
import { errorInfo, getLogger, type Logger } from "../log.ts";
import type { CircuitBreaker } from "./breaker.ts";
import { exponentialBackoff, retryDelay } from "./backoff.ts";
import { classifyError, NotConnectedError, RedisUnavailableError } from "./errors.ts";
import { type CommandObserver, connectionBreaker, guardedCall } from "./guarded_call.ts";
import { type Address, newClient, type RedisClient } from "./client.ts";
import { type BytesSender, type ConnectionState, type RedisLink, waitConnected } from "./link.ts";
import type { RawChunks } from "./raw_chunks.ts";
import { BlockingClient } from "./blocking_client.ts";
import { destroyQuietly, resolveSentinelMaster } from "./sentinel.ts";

export {
  classifyError,
  NotConnectedError,
  OutcomeUnknownError,
  RedisUnavailableError,
} from "./errors.ts";

export type { Address, RedisClient } from "./client.ts";
export type {
  BytesSender,
  CommandObserver,
  ConnectionState,
  RedisLink,
  RedisSender,
} from "./link.ts";

/** Options of `ConnectionManager`. */
export interface ConnectionManagerOptions {
  redis: Config["redis"];
  /** Client name prefix shown in CLIENT LIST. */
  clientName: string;
  logger?: Logger;
  observer?: CommandObserver;
  /** Reconnect backoff bounds in ms. Default 100 to 3000. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

const ONE_MINUTE = 60_000;

/** Owns the command and blocking clients, their (re)connection and the breaker. */
export class ConnectionManager implements RedisLink {
  readonly breaker: CircuitBreaker;
  readonly #opts: ConnectionManagerOptions;
  readonly #log: Logger;
  #state: ConnectionState = "idle";
  #command?: RedisClient;
  #blocking?: BlockingClient;
  #blockingId?: number;
  #bytes?: BlockingClient;
  #generation = 0;
  #listeners = new Set<(state: ConnectionState) => void>();
  #closing = new AbortController();
  #reconnecting?: Promise<void>;
  #address?: Address;
  #lastError?: string;
  #latencyMs?: number;
  #lastCheck?: Date;

  constructor(options: ConnectionManagerOptions) {
    this.#opts = options;
    this.#log = options.logger ?? getLogger("redis-connection");
    this.breaker = connectionBreaker(options.redis, this.#log, () => this.#emitObserver());
  }

  /** Current state. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** True while both clients are connected. */
  get connected(): boolean {
    return this.#state === "connected";
  }

  /** Increases each time a new pair of clients is connected. */
  get generation(): number {
    return this.#generation;
  }

  /** Last PING round trip in ms, when measured. */
  get latencyMs(): number | undefined {
    return this.#latencyMs;
  }

  /** When the last PING was answered or failed. */
  get lastCheck(): Date | undefined {
    return this.#lastCheck;
  }

  /** Why the connection is down, when it is. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** The address connected to (the master's, with Sentinel). */
  get address(): Address | undefined {
    return this.#address;
  }

  /** Subscribes to state changes; returns the unsubscribe function. */
  onStateChange(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The initial connection: up to `maxRetryAttempts` attempts, waiting
   * `retryDelaysMs` between them.
   * @throws {RedisUnavailableError} when every attempt failed.
   */
  async connect(): Promise<void> {
    const { maxRetryAttempts, retryDelaysMs } = this.#opts.redis;
    this.#setState("connecting");
    const started = Date.now();
    const warnTimer = setTimeout(() => {
      this.#log.warn("Redis connection attempts have been failing for over a minute", {
        elapsedMs: Date.now() - started,
      });
    }, ONE_MINUTE);
    try {
      for (let attempt = 1; attempt <= maxRetryAttempts; attempt++) {
        if (this.#closing.signal.aborted) throw new RedisUnavailableError("Shutting down");
        this.#log.info("Connection attempt {attempt}/{maxAttempts}", {
          attempt,
          maxAttempts: maxRetryAttempts,
        });
        try {
          await this.#connectPair();
          this.#log.info("Connected to Redis at {host}:{port}", { ...this.#address });
          return;
        } catch (err) {
          this.#lastError = errorInfo(err).message;
          this.#log.error("Connection attempt {attempt}/{maxAttempts} failed: {reason}", {
            attempt,
            maxAttempts: maxRetryAttempts,
            reason: this.#lastError,
          });
          if (attempt < maxRetryAttempts) {
            const wait = retryDelay(retryDelaysMs, attempt);
            this.#log.info("Retrying in {delayMs} ms", { delayMs: wait });
            await delay(wait, this.#closing.signal);
          }
        }
      }
    } finally {
      clearTimeout(warnTimer);
    }
    this.#setState("closed");
    throw new RedisUnavailableError(
      `Could not connect to Redis after ${maxRetryAttempts} attempts: ${this.#lastError}`,
    );
  }

  /** The command client. @throws {NotConnectedError} while disconnected. */
  get command(): RedisClient {
    if (this.#state !== "connected" || !this.#command) throw new NotConnectedError();
    return this.#command;
  }

  /** The dedicated blocking-read client. @throws {NotConnectedError} while disconnected. */
  get blocking(): BlockingClient {
    if (this.#state !== "connected" || !this.#blocking) throw new NotConnectedError();
    return this.#blocking;
  }

  /**
   * Runs `fn` with the command client through the circuit breaker, timing it.
   * `fn` must settle within `deadlineMs` (default CONNECTION_TIMEOUT): the
   * service enforces it itself, since node-redis drops a command's timeout
   * once the command is written. A missed deadline (a hung Redis), like any
   * connection error, replaces the connection.
   */
  exec<T>(
    fn: (client: RedisClient) => Promise<T>,
    options: { deadlineMs?: number } = {},
  ): Promise<T> {
    return this.#guarded(() => this.command, fn, options);
  }

  /** `RedisLink.execBytes`: `exec` on the client for commands encoded already. */
  execBytes<T>(
    fn: (sender: BytesSender) => Promise<T>,
    options: { deadlineMs?: number } = {},
  ): Promise<T> {
    return this.#guarded(
      () => {
        if (this.#state !== "connected" || !this.#bytes) throw new NotConnectedError();
        return this.#bytes;
      },
      fn,
      options,
    );
  }

  /** `fn` with `client()` through the breaker, within its deadline (see `exec`). */
  #guarded<C, T>(
    client: () => C,
    fn: (client: C) => Promise<T>,
    options: { deadlineMs?: number },
  ): Promise<T> {
    return guardedCall({
      breaker: this.breaker,
      observer: this.#opts.observer,
      deadlineMs: options.deadlineMs ?? this.#opts.redis.connectTimeoutMs,
      client,
      onConnectionFailure: (err) => this.#onClientProblem(err),
    }, fn);
  }

  /**
   * XREADGROUP on the dedicated blocking client (`RedisLink.readGroup`), within BLOCK_MS +
   * CONNECTION_TIMEOUT. @throws {NotConnectedError} while disconnected.
   */
  async readGroup(
    streams: readonly string[],
    ids: readonly string[],
    head: readonly string[],
    blockMs: number,
    chunks?: RawChunks,
  ): Promise<unknown> {
    const args = ["XREADGROUP", ...head, "BLOCK", String(blockMs), "STREAMS", ...streams, ...ids];
    return await this.blocking.sendCommand(args, {
      timeout: blockMs + this.#opts.redis.connectTimeoutMs,
      chunks,
    });
  }

  /** Wakes a blocked XREADGROUP on the blocking client (CLIENT UNBLOCK). */
  async unblockReader(): Promise<void> {
    if (this.#blockingId === undefined || !this.#command?.isReady) return;
    try {
      await this.#command.sendCommand(["CLIENT", "UNBLOCK", String(this.#blockingId)]);
    } catch {
      // The reader wakes at BLOCK_MS anyway.
    }
  }

  /**
   * PINGs Redis with its own short deadline; records latency and feeds the
   * breaker. A missed deadline replaces the connection (see `exec`).
   */
  async ping(timeoutMs = 1000): Promise<number> {
    const started = performance.now();
    try {
      await this.exec((c) => c.ping(), { deadlineMs: timeoutMs });
      this.#latencyMs = Math.round((performance.now() - started) * 10) / 10;
      return this.#latencyMs;
    } finally {
      this.#lastCheck = new Date();
    }
  }

  /** Resolves true once connected, false if `signal` aborts or the manager closes first. */
  waitConnected(signal?: AbortSignal): Promise<boolean> {
    return waitConnected(this, signal);
  }

  /** Treats the connection as lost (e.g. PINGs time out while sockets stay open). */
  forceReconnect(reason: string): void {
    if (this.#state !== "connected") return;
    this.#lastError = reason;
    this.#log.warn("Reconnecting to Redis: {reason}", { reason });
    this.#startReconnect();
  }

  /** Closes every client; no reconnect after this. */
  async close(): Promise<void> {
    this.#closing.abort();
    const clients = [this.#command, this.#blocking, this.#bytes];
    this.#command = this.#blocking = this.#bytes = undefined;
    this.#setState("closed");
    await Promise.all(clients.map(async (c) => {
      if (!c) return;
      try {
        if (c.isOpen) await withDeadline(c.close(), 2000);
      } catch {
        c.destroy();
      }
    }));
  }

  // ---------------------------------------------------------------------------

  #setState(state: ConnectionState): void {
    if (this.#state === state) return;
    if (this.#state === "closed") return;
    this.#state = state;
    this.#emitObserver();
    for (const l of this.#listeners) {
      try {
        l(state);
      } catch (err) {
        this.#log.error("State listener failed: {error}", { error: errorInfo(err).message });
      }
    }
  }

  #emitObserver(): void {
    this.#opts.observer?.state(this.#state === "connected", this.breaker.state);
  }

  #onClientProblem(err: unknown): void {
    if (this.#state !== "connected") return;
    const reason = errorInfo(err).message;
    const current = [this.#command, this.#blocking, this.#bytes];
    const lost = current.some((c) => !c || !c.isReady) || classifyError(err) === "connection";
    if (!lost) return;
    this.#lastError = reason;
    this.#log.warn("Redis connection lost: {reason}; reconnecting", { reason });
    this.#startReconnect();
  }

  #startReconnect(): void {
    if (this.#reconnecting || this.#closing.signal.aborted) return;
    this.#setState("reconnecting");
    const old = [this.#command, this.#blocking, this.#bytes];
    this.#command = this.#blocking = this.#bytes = undefined;
    this.#blockingId = undefined;
    for (const c of old) {
      try {
        c?.destroy();
      } catch {
        // already gone
      }
    }
    this.#reconnecting = this.#reconnectLoop().finally(() => {
      this.#reconnecting = undefined;
    });
  }

  async #reconnectLoop(): Promise<void> {
    for (let attempt = 1; !this.#closing.signal.aborted; attempt++) {
      try {
        await this.#connectPair();
        this.#log.info("Reconnected to Redis at {host}:{port} after {attempts} attempt(s)", {
          ...this.#address,
          attempts: attempt,
        });
        return;
      } catch (err) {
        this.#lastError = errorInfo(err).message;
        const wait = exponentialBackoff(attempt, {
          minMs: this.#opts.reconnectMinMs ?? 100,
          maxMs: this.#opts.reconnectMaxMs ?? 3000,
        });
        const props = { attempt, reason: this.#lastError, delayMs: wait };
        const message = "Reconnect attempt {attempt} failed: {reason}; next in {delayMs} ms";
        if (attempt <= 3 || attempt % 10 === 0) this.#log.warn(message, props);
        else this.#log.debug(message, props);
        await delay(wait, this.#closing.signal);
      }
    }
  }

  async #connectPair(): Promise<void> {
    const r = this.#opts.redis;
    const address = r.sentinel
      ? await resolveSentinelMaster(r.sentinel.nodes, r.sentinel.master, r.connectTimeoutMs)
      : { host: r.host, port: r.port };
    const timeoutMs = this.#opts.redis.connectTimeoutMs;
    // The command client gets no per-command timeout of node-redis: it makes an
    // `AbortSignal.timeout` per command that lives as long as the timeout, so each one (~230
    // alive at a time while draining) survived into the old generation (bench/RESULTS.md,
    // session 3). Its commands keep their deadline through `exec` (a missed one replaces the
    // connection, and its queue with it); the blocking client keeps each read's itself.
    const command = this.#newClient(address, "cmd");
    const blocking = new BlockingClient(r, address, `${this.#opts.clientName}:blk`);
    const bytes = new BlockingClient(r, address, `${this.#opts.clientName}:bytes`);
    try {
      await withDeadline(
        Promise.all([command.connect(), blocking.connect(), bytes.connect()]),
        timeoutMs,
      );
      if (this.#opts.redis.sentinel) {
        const role = await withDeadline(command.sendCommand(["ROLE"]), timeoutMs) as unknown[];
        if (role[0] !== "master") throw new Error(`${address.host}:${address.port} is not master`);
      }
      this.#blockingId = Number(await blocking.sendCommand(["CLIENT", "ID"]));
    } catch (err) {
      // destroy() throws on a client that already closed itself (the failed
      // one): that must neither hide `err` nor leave the other client open.
      for (const c of [command, blocking, bytes]) destroyQuietly(c);
      throw err;
    }
    if (this.#closing.signal.aborted) {
      for (const c of [command, blocking, bytes]) destroyQuietly(c);
      throw new Error("Shutting down");
    }
    this.#address = address;
    this.#command = command;
    this.#blocking = blocking;
    this.#bytes = bytes;
    this.#generation++;
    this.#lastError = undefined;
    // A completed handshake is a successful Redis operation: close the breaker.
    this.breaker.recordSuccess();
    for (const c of [command, blocking, bytes]) {
      c.on("error", (err: unknown) => {
        if (c === this.#command || c === this.#blocking || c === this.#bytes) {
          this.#onClientProblem(err);
        }
      });
    }
    this.#setState("connected");
  }

  #newClient(address: Address, role: string): RedisClient {
    const name = `${this.#opts.clientName}:${role}`;
    return newClient(this.#opts.redis, address, name, undefined);
  }
}
