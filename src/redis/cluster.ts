/**
 * Redis Cluster access (README "Redis Cluster and partitioned streams"): `ClusterConnection`
 * owns node-redis' cluster client (MOVED/ASK followed by node-redis, failovers followed by
 * `followFailovers`), with TLS and ACL applied to every node, RESP2, a readiness check that
 * PINGs every master, commands routed by key through the circuit breaker and a deadline, and
 * one dedicated blocking connection per slot read (`BlockingPool`, cluster_blocking.ts) for
 * XREADGROUP BLOCK on streams of that slot, so a blocked read never delays another command nor
 * another slot's read. The same spirit as `ConnectionManager` (connection.ts): states,
 * deadlines, the breaker; node-redis reconnects the node clients.
 */
import { createCluster } from "npm:@redis/client@^5.12.1";
import {
  type ClusterClient,
  followFailovers,
  rediscover,
  type RootNode,
} from "./cluster_failover.ts";
import { delay, withDeadline } from "../clock.ts";
import { type Config, readTlsFiles } from "../config.ts";
import { errorInfo, getLogger, type Logger } from "../log.ts";
import { slotOf } from "../stream/keys.ts";
import { retryDelay } from "./backoff.ts";
import type { CircuitBreaker } from "./breaker.ts";
import type { BlockingClient } from "./blocking_client.ts";
import type { Address } from "./client.ts";
import type { Commander } from "./commander.ts";
import type { ConnectionState } from "./connection.ts";
import { classifyError, NotConnectedError, RedisUnavailableError } from "./errors.ts";
import { type CommandObserver, connectionBreaker, guardedCall } from "./guarded_call.ts";
import { destroyQuietly } from "./sentinel.ts";
import { BlockingPool } from "./cluster_blocking.ts";
import { ReplicaCounts } from "./cluster_replicas.ts";

export { type ClusterClient, followFailovers, type RootNode } from "./cluster_failover.ts";

/** Replies that mean the cluster is being reconfigured: retry soon, on a fresh slot map. */
const RECONFIGURING_RE = /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN|UNBLOCKED|READONLY|MASTERDOWN)/;

/** Options of `ClusterConnection`. */
export interface ClusterConnectionOptions {
  /** The Redis configuration; `redis.cluster` names the seed nodes. */
  redis: Config["redis"];
  /** Client name prefix shown in CLIENT LIST. */
  clientName: string;
  logger?: Logger;
  observer?: CommandObserver;
}

/** The cluster client, the readiness of every master, routed commands, blocking connections. */
export class ClusterConnection implements Commander {
  readonly breaker: CircuitBreaker;
  readonly #opts: ClusterConnectionOptions;
  readonly #log: Logger;
  readonly #seeds: RootNode[];
  #state: ConnectionState = "idle";
  #cluster?: ClusterClient;
  #unfollow?: () => void;
  readonly #blocking: BlockingPool;
  #closing = new AbortController();
  #lastError?: string;
  #latencyMs?: number;
  /** Replicas per master (`host:port`), from `CLUSTER NODES`, and when it was read. */
  readonly #replicas = new ReplicaCounts(async () =>
    String(await this.exec(undefined, (c) => c.sendCommand(undefined, false, ["CLUSTER", "NODES"])))
  );

  constructor(options: ClusterConnectionOptions) {
    if (!options.redis.cluster) throw new TypeError("redis.cluster (REDIS_CLUSTER_NODES) is unset");
    this.#opts = options;
    this.#log = options.logger ?? getLogger("redis-cluster");
    this.#seeds = options.redis.cluster.nodes.map((n) => ({
      socket: { host: n.host, port: n.port },
    }));
    this.breaker = connectionBreaker(options.redis, this.#log, () => this.#emitObserver());
    this.#blocking = new BlockingPool(options.redis, options.clientName);
  }

  /** Current state: "connected" from a successful `connect()` until `close()`. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** Why the last operation or attempt failed, when it did. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** Round trip of the slowest master in the last `ready()` check, in ms. */
  get latencyMs(): number | undefined {
    return this.#latencyMs;
  }

  /** The cluster client. @throws {NotConnectedError} before `connect()` or after `close()`. */
  get client(): ClusterClient {
    if (this.#state !== "connected" || !this.#cluster) throw new NotConnectedError();
    return this.#cluster;
  }

  /**
   * The initial connection: up to `maxRetryAttempts` attempts (each: discover the topology from
   * the seeds, connect to every master, PING every master, all within CONNECTION_TIMEOUT),
   * waiting `retryDelaysMs` between them.
   * @throws {RedisUnavailableError} when every attempt failed.
   */
  async connect(): Promise<void> {
    const { maxRetryAttempts, retryDelaysMs, connectTimeoutMs } = this.#opts.redis;
    this.#setState("connecting");
    for (let attempt = 1;; attempt++) {
      const cluster = this.#newCluster();
      // A failed discovery is reported only as an "error" event (connect() then rejects with
      // "All the root nodes are unavailable"): kept, so the logged reason names the cause (e.g.
      // a certificate error).
      let discoveryError: string | undefined;
      cluster.on("error", (err: unknown) => {
        discoveryError = errorInfo(err).message;
      });
      try {
        await withDeadline(cluster.connect(), connectTimeoutMs);
        this.#cluster = cluster;
        this.#unfollow = followFailovers(cluster, this.#seeds);
        this.#state = "connected"; // ready() needs `client`; announced below.
        if (!(await this.ready(connectTimeoutMs))) throw new Error(this.#lastError);
        this.breaker.recordSuccess();
        this.#setState("connected", true);
        this.#log.info("Connected to Redis Cluster: {masters} masters", {
          masters: cluster.masters.length,
        });
        return;
      } catch (err) {
        this.#unfollow?.();
        this.#cluster = this.#unfollow = undefined;
        this.#state = "connecting";
        destroyQuietly(cluster);
        this.#lastError = withCause(errorInfo(err).message, discoveryError);
        if (this.#closing.signal.aborted) {
          throw new RedisUnavailableError("Closed while connecting");
        }
        if (attempt >= maxRetryAttempts) {
          throw new RedisUnavailableError(
            `Redis Cluster unavailable after ${attempt} attempt(s): ${this.#lastError}`,
            { cause: err },
          );
        }
        const wait = retryDelay(retryDelaysMs, attempt);
        this.#log.warn("Cluster connection attempt {attempt} failed: {reason}; next in {wait} ms", {
          attempt,
          reason: this.#lastError,
          wait,
        });
        await delay(wait, this.#closing.signal);
      }
    }
  }

  /**
   * Readiness: PINGs every master the slot map names, each within `timeoutMs`. True when all
   * answered (and every slot has a master); false otherwise, with the reason in `lastError`.
   */
  async ready(timeoutMs = 1000): Promise<boolean> {
    let cluster: ClusterClient;
    try {
      cluster = this.client;
    } catch (err) {
      this.#lastError = errorInfo(err).message;
      return false;
    }
    const masters = cluster.masters;
    if (masters.length === 0) {
      this.#lastError = "no master known";
      return false;
    }
    const started = performance.now();
    const results = await Promise.allSettled(masters.map(async (master) => {
      const client = await withDeadline(cluster.nodeClient(master), timeoutMs);
      await withDeadline(client.ping(), timeoutMs);
    }));
    const failed = results.flatMap((r, i) =>
      r.status === "rejected"
        ? [`${masters[i].host}:${masters[i].port}: ${errorInfo(r.reason).message}`]
        : []
    );
    if (failed.length > 0) {
      this.#lastError = `master(s) not answering: ${failed.join("; ")}`;
      this.breaker.recordFailure();
      return false;
    }
    this.#latencyMs = Math.round((performance.now() - started) * 10) / 10;
    this.breaker.recordSuccess();
    return true;
  }

  /**
   * Runs `fn` with the cluster client through the circuit breaker, within `deadlineMs` (default
   * CONNECTION_TIMEOUT). `fn` should name `key` first in its commands (node-redis routes by it).
   * A connection failure (or a redirection node-redis gave up on) fails with
   * `NotConnectedError` (nothing sent) or `OutcomeUnknownError` (maybe applied) and starts a
   * refresh of the slot map; Redis' own error replies pass through.
   */
  exec<T>(
    key: string | undefined,
    fn: (cluster: ClusterClient) => Promise<T>,
    options: { deadlineMs?: number } = {},
  ): Promise<T> {
    return guardedCall({
      breaker: this.breaker,
      observer: this.#opts.observer,
      deadlineMs: options.deadlineMs ?? this.#opts.redis.connectTimeoutMs,
      client: () => this.client,
      // A redirection node-redis gave up on counts as a connection failure: refresh the map.
      classify: (err: unknown) =>
        err instanceof Error && RECONFIGURING_RE.test(err.message)
          ? "connection"
          : classifyError(err),
      onConnectionFailure: (_err: unknown, message: string) => {
        this.refresh(key);
        this.#lastError = message;
      },
    }, fn);
  }

  /** `Commander`: one raw command routed by `firstKey`, through `exec`. */
  send(firstKey: string | undefined, args: readonly string[]): Promise<unknown> {
    return this.exec(firstKey, (c) => c.sendCommand(firstKey, false, [...args]));
  }

  /** Refreshes the slot map now (after a failover, `MOVED` on a blocking read, `TRYAGAIN`…). */
  refresh(_reason?: string): void {
    const cluster = this.#cluster;
    if (!cluster?.isOpen) return;
    rediscover(cluster, this.#seeds).catch(() => {});
  }

  /** Address (`host:port`) of the master serving `key`'s slot in the current slot map. */
  masterAddressOf(key: string): Address {
    const shard = this.client.slots[slotOf(key)];
    if (!shard?.master) throw new NotConnectedError(`no master known for slot ${slotOf(key)}`);
    return { host: shard.master.host, port: shard.master.port };
  }

  /**
   * How many replicas the cluster names for the master serving `key`'s slot (see
   * `replicaCounts`), from `CLUSTER NODES` of any master, read again when older than `maxAgeMs`
   * or when that master is not in it; 0 when it is still not.
   */
  async replicasOf(key: string, maxAgeMs = 5000): Promise<number> {
    const master = this.masterAddressOf(key);
    return await this.#replicas.of(`${master.host}:${master.port}`, maxAgeMs);
  }

  /** The replica counts are read again at the next `replicasOf`. */
  forgetReplicas(): void {
    this.#replicas.forget();
  }

  /**
   * `WAIT replicas timeoutMs` on the connection of the master serving `key`'s slot (node-redis
   * keeps one per node: the one every command routed by `key` went through), through `exec`
   * within `timeoutMs` + CONNECTION_TIMEOUT. Resolves to how many replicas acknowledged every
   * write sent on that connection so far.
   */
  async waitReplicas(key: string, replicas: number, timeoutMs: number): Promise<number> {
    const reply = await this.exec(
      key,
      (c) => c.sendCommand(key, false, ["WAIT", String(replicas), String(timeoutMs)]),
      { deadlineMs: timeoutMs + this.#opts.redis.connectTimeoutMs },
    );
    return Number(reply);
  }

  /**
   * The dedicated blocking connection for reads of `key`'s slot, to the master serving it (see
   * `BlockingPool`). Blocking reads on it name streams of that one slot only.
   */
  async blockingFor(key: string): Promise<BlockingClient> {
    return await this.#blocking.get(key, this.masterAddressOf(key));
  }

  /** Wakes a blocked read of `key`'s slot: it returns as if it timed out. */
  async unblock(key: string): Promise<void> {
    const cluster = this.#cluster;
    if (!cluster?.isOpen) return;
    await this.#blocking.unblock(key, (k, args) => cluster.sendCommand(k, false, args));
  }

  /** `unblock` for every slot read on a blocking connection. */
  async unblockAll(): Promise<void> {
    await Promise.all(this.#blocking.keys().map((k) => this.unblock(k)));
  }

  /**
   * XREADGROUP … BLOCK `blockMs` … STREAMS on the blocking connection of their slot. Every
   * stream must hash to one slot. Within BLOCK_MS + CONNECTION_TIMEOUT; a connection failure,
   * `MOVED` (the slot moved), `UNBLOCKED` (the node became a replica) or `TRYAGAIN` closes that
   * connection, refreshes the slot map and rejects with `NotConnectedError`: read again.
   * @param args everything after `XREADGROUP` up to (not including) `STREAMS`.
   */
  async readGroup(
    streams: readonly string[],
    ids: readonly string[],
    args: readonly string[],
    blockMs: number,
  ): Promise<unknown> {
    if (streams.length === 0 || streams.length !== ids.length) {
      throw new TypeError("readGroup needs one id per stream");
    }
    const slot = slotOf(streams[0]);
    const other = streams.find((s) => slotOf(s) !== slot);
    if (other !== undefined) {
      throw new TypeError(`${other} and ${streams[0]} are in different slots: read them apart`);
    }
    const client = await this.blockingFor(streams[0]);
    const command = [
      "XREADGROUP",
      ...args,
      "BLOCK",
      String(blockMs),
      "STREAMS",
      ...streams,
      ...ids,
    ];
    try {
      return await client.sendCommand(command, {
        timeout: blockMs + this.#opts.redis.connectTimeoutMs,
      });
    } catch (err) {
      const reconfiguring = err instanceof Error && RECONFIGURING_RE.test(err.message);
      if (!reconfiguring && classifyError(err) === "reply") throw err; // NOGROUP…
      this.#blocking.drop(client);
      this.refresh();
      throw new NotConnectedError(errorInfo(err).message, { cause: err });
    }
  }

  /** Closes every client; no reconnect after this. */
  async close(): Promise<void> {
    this.#closing.abort();
    this.#setState("closed", true);
    this.#unfollow?.();
    const cluster = this.#cluster;
    this.#cluster = this.#unfollow = undefined;
    this.#blocking.closeAll();
    if (cluster) {
      try {
        await withDeadline(cluster.close(), 2000);
      } catch {
        destroyQuietly(cluster);
      }
    }
  }

  #newCluster(): ClusterClient {
    const r = this.#opts.redis;
    const tls = r.tls.enabled ? { tls: true as const, ...readTlsFiles(r.tls) } : {};
    const cluster = createCluster({
      rootNodes: this.#seeds,
      RESP: 2,
      maxCommandRedirections: 16,
      defaults: {
        username: r.username,
        password: r.password,
        name: `${this.#opts.clientName}:cmd`.replace(/[^\x21-\x7e]/g, "_"),
        disableOfflineQueue: true,
        // keepAlive/noDelay apply to TLS sockets too (see client.ts).
        socket: {
          connectTimeout: r.connectTimeoutMs,
          keepAlive: true,
          keepAliveInitialDelay: 5000,
          noDelay: true,
          reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 3000),
          ...tls,
        } as Record<string, unknown>,
      },
    }) as ClusterClient;
    // Errors surface through the commands; this keeps a node's socket error from being unhandled.
    cluster.on("error", () => {});
    cluster.on("node-error", (err: unknown) => {
      this.#lastError = errorInfo(err).message;
    });
    return cluster;
  }

  #setState(state: ConnectionState, force = false): void {
    if (!force && this.#state === state) return;
    if (this.#state === "closed") return;
    this.#state = state;
    this.#emitObserver();
  }

  #emitObserver(): void {
    this.#opts.observer?.state(this.#state === "connected", this.breaker.state);
  }
}

/** `message`, followed by `cause` when there is one that it does not already say. */
function withCause(message: string, cause: string | undefined): string {
  return cause && !message.includes(cause) ? `${message} (${cause})` : message;
}
