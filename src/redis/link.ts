/**
 * `RedisLink`: what the service's parts (consumer, publisher, admin, health, pinger) need of
 * Redis, the same on one Redis primary (`ConnectionManager`, connection.ts: Sentinel too) and on a
 * Redis Cluster (`ClusterLink`, cluster_link.ts). Parts send raw commands through `exec` with
 * every key in the command (a cluster routes each command by its key) and run blocking reads
 * through `readGroup`, which on a cluster reads each slot's streams on their own connection.
 */
import type { CircuitBreaker } from "./breaker.ts";
import type { Address } from "./client.ts";
import type { CommandObserver } from "./guarded_call.ts";
import type { RawChunks } from "./raw_chunks.ts";

/** Where a link stands. */
export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

export type { CommandObserver };

/** Sends one raw command (RESP2 reply, or the error Redis answered). */
export interface RedisSender {
  sendCommand(args: string[]): Promise<unknown>;
}

/** Sends one command encoded already (`BlockingClient.sendBytes`). */
export interface BytesSender {
  sendBytes(bytes: Uint8Array, options?: { timeout?: number }): Promise<unknown>;
}

/**
 * Redis Cluster only: whether the master serving a key has replicas, and `WAIT` for them. The
 * relay (docs/architecture.md "The outbox and the relay") confirms with it that its copies
 * reached a replica before it deletes their outbox entries.
 */
export interface Replication {
  /**
   * How many replicas the cluster names for the master serving `key`'s slot, failed ones
   * included (from `CLUSTER NODES`, read again when a few seconds old).
   */
  replicasOf(key: string): Promise<number>;
  /**
   * `WAIT replicas <timeout>` on the connection that commands routed by `key` use (the one
   * connection to the master serving its slot, so it covers every write sent there before it);
   * resolves to how many replicas acknowledged them. The timeout is short: WAIT holds that
   * connection, and every command behind it waits too.
   */
  waitReplicas(key: string, replicas: number): Promise<number>;
}

/** The service's access to Redis. */
export interface RedisLink {
  /** Redis Cluster: replica counts and `WAIT` per master; undefined on one Redis (or Sentinel). */
  readonly replication?: Replication;
  readonly breaker: CircuitBreaker;
  /** Current state. */
  readonly state: ConnectionState;
  /** True while commands can be sent. */
  readonly connected: boolean;
  /**
   * Increases each time the connection is replaced (a reconnect; on a cluster, a failover or a
   * moved slot): the reader then looks for its own pending entries again.
   */
  readonly generation: number;
  /** Last PING round trip in ms (on a cluster: the slowest master's). */
  readonly latencyMs: number | undefined;
  /** When the last PING was answered or failed. */
  readonly lastCheck: Date | undefined;
  /** Why the link is down or the last check failed, when it is. */
  readonly lastError: string | undefined;
  /** The address connected to (the master's with Sentinel); undefined on a cluster. */
  readonly address: Address | undefined;
  /** Subscribes to state changes; returns the unsubscribe function. */
  onStateChange(listener: (state: ConnectionState) => void): () => void;
  /**
   * The initial connection, with the configured attempts.
   * @throws {RedisUnavailableError} when every attempt failed.
   */
  connect(): Promise<void>;
  /**
   * Runs `fn` through the circuit breaker within `deadlineMs` (default CONNECTION_TIMEOUT). Each
   * command `fn` sends goes to the node serving its first key; a script's keys share one slot.
   */
  exec<T>(fn: (sender: RedisSender) => Promise<T>, options?: { deadlineMs?: number }): Promise<T>;
  /**
   * One Redis (and Sentinel) only; undefined on a cluster: `exec` on a connection of its own for
   * commands the service encodes itself (the consumer's settle calls with forwarded entries'
   * bytes as they were read: `settle_command.ts`).
   */
  execBytes?<T>(
    fn: (sender: BytesSender) => Promise<T>,
    options?: { deadlineMs?: number },
  ): Promise<T>;
  /**
   * XREADGROUP `head` (GROUP g c COUNT n) BLOCK `blockMs` STREAMS `streams` `ids` on a dedicated
   * connection, within BLOCK_MS + CONNECTION_TIMEOUT. The reply merges every stream's entries
   * (null when none came). With `chunks` (and `execBytes`), each entry also says where its
   * fields' bytes lie (`RawEntry`); a link without `execBytes` ignores it.
   */
  readGroup(
    streams: readonly string[],
    ids: readonly string[],
    head: readonly string[],
    blockMs: number,
    chunks?: RawChunks,
  ): Promise<unknown>;
  /** Wakes a blocked `readGroup` (CLIENT UNBLOCK), e.g. when the streams to read changed. */
  unblockReader(): Promise<void>;
  /** PINGs (every master, on a cluster) within `timeoutMs`; resolves to the round trip in ms. */
  ping(timeoutMs?: number): Promise<number>;
  /** Resolves true once connected, false if `signal` aborts or the link closes first. */
  waitConnected(signal?: AbortSignal): Promise<boolean>;
  /** Treats the connection as lost (PINGs time out while sockets stay open). */
  forceReconnect(reason: string): void;
  /** Closes every client; no reconnect after this. */
  close(): Promise<void>;
}

/**
 * `RedisLink.waitConnected` for a link with `state` and `onStateChange`: true once connected,
 * false if `signal` aborts or the link closes first.
 */
export function waitConnected(
  link: Pick<RedisLink, "state" | "onStateChange">,
  signal?: AbortSignal,
): Promise<boolean> {
  if (link.state === "connected") return Promise.resolve(true);
  if (link.state === "closed") return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (value: boolean) => {
      off();
      signal?.removeEventListener("abort", onAbort);
      resolve(value);
    };
    const onAbort = () => done(false);
    const off = link.onStateChange((s) => {
      if (s === "connected") done(true);
      else if (s === "closed") done(false);
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
