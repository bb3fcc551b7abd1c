/**
 * ConnectionManager: owns the Redis clients (spec sections 3 and 6). A command
 * client for everything but blocking reads, and a dedicated client for
 * XREADGROUP BLOCK, so a blocked read never delays a PING or a publish.
 *
 * Initial connection: `maxRetryAttempts` attempts with `retryDelaysMs` between
 * them, a warning after one minute, then `RedisUnavailableError` (main exits 1).
 * After that, a lost connection is re-established forever with exponential
 * backoff; Sentinel is asked for the master again on every attempt. node-redis'
 * own reconnect is off so that state, address resolution and backoff live here.
 * Every operation through `exec` passes the circuit breaker and is timed.
 */
import { createClient, ErrorReply, type RedisClientOptions } from "@redis/client";
import { type Config, readTlsFiles } from "../config.ts";
import { DeadlineError, delay, withDeadline } from "../clock.ts";
import { errorInfo, getLogger, type Logger } from "../log.ts";
import { CircuitBreaker, type CircuitState } from "./breaker.ts";
import { exponentialBackoff, retryDelay } from "./backoff.ts";

/** A RESP2 node-redis client as this service creates it. */
export type RedisClient = ReturnType<typeof createClient>;

/** Where the manager stands. */
export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

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

/** Observer of Redis command outcomes (metrics). */
export interface CommandObserver {
  command(durationSeconds: number, ok: boolean): void;
  state(up: boolean, circuit: CircuitState): void;
}

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

interface Address {
  host: string;
  port: number;
}

const ONE_MINUTE = 60_000;

/** Owns the command and blocking clients, their (re)connection and the breaker. */
export class ConnectionManager {
  readonly breaker: CircuitBreaker;
  readonly #opts: ConnectionManagerOptions;
  readonly #log: Logger;
  #state: ConnectionState = "idle";
  #command?: RedisClient;
  #blocking?: RedisClient;
  #blockingId?: number;
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
    this.breaker = new CircuitBreaker({
      failureThreshold: options.redis.circuitFailureThreshold,
      resetMs: options.redis.circuitResetMs,
      onStateChange: (from, to) => {
        this.#log.warn("Circuit breaker {from} -> {to}", { from, to });
        this.#emitObserver();
      },
    });
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
  get blocking(): RedisClient {
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
  async exec<T>(
    fn: (client: RedisClient) => Promise<T>,
    options: { deadlineMs?: number } = {},
  ): Promise<T> {
    this.breaker.acquire();
    const started = performance.now();
    let client: RedisClient;
    try {
      client = this.command;
    } catch (err) {
      // Known to be disconnected: failing fast already, no call was made. Release
      // a half-open trial without judging it; the reconnect loop decides.
      this.breaker.release();
      throw err;
    }
    try {
      const deadlineMs = options.deadlineMs ?? this.#opts.redis.connectTimeoutMs;
      const result = await withDeadline(fn(client), deadlineMs);
      this.breaker.recordSuccess();
      this.#opts.observer?.command((performance.now() - started) / 1000, true);
      return result;
    } catch (err) {
      this.#opts.observer?.command((performance.now() - started) / 1000, false);
      const kind = classifyError(err);
      if (kind === "reply") {
        // Redis answered (WRONGTYPE, NOGROUP, a script error…): it is up.
        this.breaker.recordSuccess();
        throw err;
      }
      if (kind === "other") throw err; // a bug of ours, not a Redis failure
      this.breaker.recordFailure();
      this.#onClientProblem(err);
      // Socket closed, command timed out…: callers see one error type for "Redis away".
      throw new NotConnectedError(errorInfo(err).message, { cause: err });
    }
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
    if (this.#state === "connected") return Promise.resolve(true);
    if (this.#state === "closed") return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (value: boolean) => {
        off();
        signal?.removeEventListener("abort", onAbort);
        resolve(value);
      };
      const onAbort = () => done(false);
      const off = this.onStateChange((s) => {
        if (s === "connected") done(true);
        else if (s === "closed") done(false);
      });
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Treats the connection as lost (e.g. PINGs time out while sockets stay open). */
  forceReconnect(reason: string): void {
    if (this.#state !== "connected") return;
    this.#lastError = reason;
    this.#log.warn("Reconnecting to Redis: {reason}", { reason });
    this.#startReconnect();
  }

  /** Closes both clients; no reconnect after this. */
  async close(): Promise<void> {
    this.#closing.abort();
    const clients = [this.#command, this.#blocking];
    this.#command = this.#blocking = undefined;
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
    const current = [this.#command, this.#blocking];
    const lost = current.some((c) => !c || !c.isReady) || classifyError(err) === "connection";
    if (!lost) return;
    this.#lastError = reason;
    this.#log.warn("Redis connection lost: {reason}; reconnecting", { reason });
    this.#startReconnect();
  }

  #startReconnect(): void {
    if (this.#reconnecting || this.#closing.signal.aborted) return;
    this.#setState("reconnecting");
    const old = [this.#command, this.#blocking];
    this.#command = this.#blocking = undefined;
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
    const address = await this.#resolveAddress();
    const timeoutMs = this.#opts.redis.connectTimeoutMs;
    const command = this.#newClient(address, "cmd", timeoutMs);
    const blocking = this.#newClient(address, "blk", undefined);
    enforceDeadlines(blocking, timeoutMs, (err) => {
      if (blocking === this.#blocking) this.#onClientProblem(err);
    });
    try {
      await withDeadline(Promise.all([command.connect(), blocking.connect()]), timeoutMs);
      if (this.#opts.redis.sentinel) {
        const role = await command.sendCommand(["ROLE"]) as unknown[];
        if (role[0] !== "master") throw new Error(`${address.host}:${address.port} is not master`);
      }
      this.#blockingId = Number(await blocking.sendCommand(["CLIENT", "ID"]));
    } catch (err) {
      // destroy() throws on a client that already closed itself (the failed
      // one): that must neither hide `err` nor leave the other client open.
      destroyQuietly(command);
      destroyQuietly(blocking);
      throw err;
    }
    if (this.#closing.signal.aborted) {
      destroyQuietly(command);
      destroyQuietly(blocking);
      throw new Error("Shutting down");
    }
    this.#address = address;
    this.#command = command;
    this.#blocking = blocking;
    this.#generation++;
    this.#lastError = undefined;
    // A completed handshake is a successful Redis operation: close the breaker.
    this.breaker.recordSuccess();
    for (const c of [command, blocking]) {
      c.on("error", (err: unknown) => {
        if (c === this.#command || c === this.#blocking) this.#onClientProblem(err);
      });
    }
    this.#setState("connected");
  }

  #newClient(address: Address, role: string, timeoutMs: number | undefined): RedisClient {
    const r = this.#opts.redis;
    // PEM files are read on every connect, so renewed certificates are picked up.
    const tls = r.tls.enabled
      ? {
        tls: true as const,
        servername: isIp(address.host) ? undefined : address.host,
        ...readTlsFiles(r.tls),
      }
      : {};
    // keepAlive/noDelay apply to TLS sockets too (node-redis passes them to
    // net.connect under tls.connect); its TLS option type just omits them.
    const socket = {
      host: address.host,
      port: address.port,
      connectTimeout: r.connectTimeoutMs,
      keepAlive: true,
      keepAliveInitialDelay: 5000,
      noDelay: true,
      reconnectStrategy: false as const,
      ...tls,
    } as RedisClientOptions["socket"];
    const options: RedisClientOptions = {
      socket,
      username: r.username,
      password: r.password,
      name: `${this.#opts.clientName}:${role}`.replace(/[^\x21-\x7e]/g, "_"),
      RESP: 2,
      disableOfflineQueue: true,
      disableClientInfo: true,
      commandOptions: timeoutMs ? { timeout: timeoutMs } : undefined,
    };
    const client = createClient(options) as RedisClient;
    // Errors surface through the commands and the listener added on success;
    // this one keeps an early socket error from being an unhandled event.
    client.on("error", () => {});
    return client;
  }

  async #resolveAddress(): Promise<Address> {
    const r = this.#opts.redis;
    if (!r.sentinel) return { host: r.host, port: r.port };
    const errors: string[] = [];
    for (const node of r.sentinel.nodes) {
      const client = createClient({
        socket: {
          host: node.host,
          port: node.port,
          connectTimeout: Math.min(r.connectTimeoutMs, 2000),
          reconnectStrategy: false,
        },
        RESP: 2,
        disableOfflineQueue: true,
        disableClientInfo: true,
      });
      client.on("error", () => {});
      try {
        await withDeadline(client.connect(), Math.min(r.connectTimeoutMs, 2000));
        const reply = await withDeadline(
          client.sendCommand(["SENTINEL", "get-master-addr-by-name", r.sentinel.master]),
          2000,
        ) as string[] | null;
        if (reply && reply.length === 2) return { host: reply[0], port: Number(reply[1]) };
        errors.push(`${node.host}:${node.port} does not know master "${r.sentinel.master}"`);
      } catch (err) {
        errors.push(`${node.host}:${node.port}: ${errorInfo(err).message}`);
      } finally {
        destroyQuietly(client); // an unreachable sentinel must not stop the loop
      }
    }
    throw new Error(`No sentinel gave a master address (${errors.join("; ")})`);
  }
}

/**
 * Makes `client.sendCommand` (how the consumer sends its XREADGROUP BLOCK on
 * the blocking client) keep its deadline: the command's `timeout` option
 * (the consumer passes BLOCK_MS + CONNECTION_TIMEOUT), else `defaultMs`. When
 * it passes, the call rejects with a `DeadlineError` and `onExpired` is told,
 * so the connection is replaced instead of waiting on a hung Redis forever.
 * Only direct `sendCommand` calls on this object are covered; the command
 * client's deadlines are kept by `exec`.
 */
function enforceDeadlines(
  client: RedisClient,
  defaultMs: number,
  onExpired: (err: DeadlineError) => void,
): void {
  const send = client.sendCommand.bind(client);
  const guarded = (args: Parameters<typeof send>[0], options?: Parameters<typeof send>[1]) =>
    withDeadline(send(args, options), options?.timeout ?? defaultMs).catch((err: unknown) => {
      if (err instanceof DeadlineError) onExpired(err);
      throw err;
    });
  // sendCommand is generic in its reply type only; the reply passes through unchanged.
  client.sendCommand = guarded as typeof send;
}

/** Closes `client` at once; no-op (instead of ClientClosedError) when it already closed. */
function destroyQuietly(client: { isOpen: boolean; destroy(): void }): void {
  try {
    if (client.isOpen) client.destroy();
  } catch {
    // already gone
  }
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
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
