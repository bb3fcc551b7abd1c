/**
 * `ClusterLink`: the service's `RedisLink` on a Redis Cluster (README "Redis Cluster and
 * partitioned streams"), over `ClusterConnection` (cluster.ts). Every raw command a part sends
 * through `exec` goes to the master serving its first key (`commandKey`); `SCRIPT LOAD` goes to
 * every master, so a script is known wherever its keys live. A blocking read of streams in
 * several slots becomes one read per slot, each on its own connection, merged: the first reply
 * with entries wakes the others (CLIENT UNBLOCK), and every reply is awaited, so nothing a read
 * took is dropped. PINGs go to every master; when they keep failing, `forceReconnect` refreshes
 * the slot map and checks again until every master answers.
 */
import { delay } from "../clock.ts";
import { errorInfo, getLogger, type Logger } from "../log.ts";
import { slotOf } from "../stream/keys.ts";
import { exponentialBackoff } from "./backoff.ts";
import type { CircuitBreaker } from "./breaker.ts";
import { type ClusterClient, ClusterConnection, type ClusterConnectionOptions } from "./cluster.ts";
import type { Address } from "./client.ts";
import { NotConnectedError } from "./errors.ts";
import {
  type ConnectionState,
  type RedisLink,
  type RedisSender,
  type Replication,
  waitConnected,
} from "./link.ts";

/**
 * The key a raw command is routed by: the first key it names (after `STREAMS` for reads, the
 * first of KEYS for scripts); undefined for commands without a key.
 */
export function commandKey(args: readonly string[]): string | undefined {
  const name = args[0]?.toUpperCase();
  switch (name) {
    case "EVALSHA":
    case "EVAL":
    case "EVALSHA_RO":
    case "EVAL_RO":
    case "FCALL":
      return Number(args[2]) > 0 ? args[3] : undefined;
    case "XREAD":
    case "XREADGROUP": {
      // XREADGROUP GROUP g c [COUNT n] [BLOCK ms] [NOACK] STREAMS key… / XREAD [COUNT n]…
      for (let i = name === "XREAD" ? 1 : 4; i < args.length; i++) {
        const option = args[i].toUpperCase();
        if (option === "STREAMS") return args[i + 1];
        if (option === "COUNT" || option === "BLOCK") i++;
      }
      return undefined;
    }
    case "XINFO":
    case "XGROUP":
    case "OBJECT":
    case "MEMORY":
      return args[2];
    case "SCRIPT":
    case "PING":
    case "CLIENT":
    case "INFO":
    case "CLUSTER":
    case "ROLE":
    case "TIME":
      return undefined;
    default:
      return args[1];
  }
}

/**
 * A `RedisSender` over node-redis' cluster client: each command to the master of its key
 * (MOVED/ASK followed by node-redis); `SCRIPT LOAD` to every master (the SHA1 is the same
 * everywhere; a master that missed it answers NOSCRIPT later and is loaded again).
 */
export function routedSender(cluster: ClusterClient): RedisSender {
  return {
    async sendCommand(args: string[]): Promise<unknown> {
      if (args[0]?.toUpperCase() !== "SCRIPT" || args[1]?.toUpperCase() !== "LOAD") {
        return await cluster.sendCommand(commandKey(args), false, args);
      }
      const loads = await Promise.allSettled(
        cluster.masters.map(async (m) => (await cluster.nodeClient(m)).sendCommand(args)),
      );
      const done = loads.find((r) => r.status === "fulfilled");
      if (done) return (done as PromiseFulfilledResult<unknown>).value;
      throw (loads[0] as PromiseRejectedResult | undefined)?.reason ??
        new Error("no master to load the script on");
    },
  };
}

/** A read reply: per stream, its entries. */
type Reply = [string, unknown[]][] | null;

/** The service's Redis access on a cluster (see the module comment). */
export class ClusterLink implements RedisLink {
  readonly #cc: ClusterConnection;
  readonly #log: Logger;
  #state: ConnectionState = "idle";
  #generation = 0;
  #listeners = new Set<(state: ConnectionState) => void>();
  #lastCheck?: Date;
  #lastError?: string;
  #recovering?: Promise<void>;
  #closing = new AbortController();
  /** The routed sender of the current cluster client: one per client, not one per command. */
  #sender?: { cluster: ClusterClient; sender: RedisSender };

  /**
   * Replica counts and `WAIT` (the relay's confirmation, docs/architecture.md "The outbox and
   * the relay"). WAIT's timeout: min(CONNECTION_TIMEOUT / 2, 500) ms, so that a command queued
   * behind it on that master's connection (a PING, within min(CONNECTION_TIMEOUT, 1 s)) still
   * has time; a WAIT that falls short is asked again later.
   */
  readonly replication: Replication;

  constructor(options: ClusterConnectionOptions) {
    this.#log = options.logger ?? getLogger("redis-cluster");
    const cc = this.#cc = new ClusterConnection({ ...options, logger: this.#log });
    const waitMs = Math.max(1, Math.floor(Math.min(options.redis.connectTimeoutMs / 2, 500)));
    this.replication = {
      replicasOf: (key) => cc.replicasOf(key),
      waitReplicas: async (key, replicas) => {
        const acked = await cc.waitReplicas(key, replicas, waitMs);
        // Short: a replica may have left the cluster for good; count the replicas again.
        if (acked < replicas) cc.forgetReplicas();
        return acked;
      },
    };
  }

  get breaker(): CircuitBreaker {
    return this.#cc.breaker;
  }
  get state(): ConnectionState {
    return this.#state;
  }
  get connected(): boolean {
    return this.#state === "connected";
  }
  get generation(): number {
    return this.#generation;
  }
  get latencyMs(): number | undefined {
    return this.#cc.latencyMs;
  }
  get lastCheck(): Date | undefined {
    return this.#lastCheck;
  }
  get lastError(): string | undefined {
    return this.#lastError ?? this.#cc.lastError;
  }
  /** Undefined: a cluster has no one address (the masters are in the slot map). */
  get address(): Address | undefined {
    return undefined;
  }
  /** The cluster connection underneath (tests, diagnostics). */
  get cluster(): ClusterConnection {
    return this.#cc;
  }

  onStateChange(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async connect(): Promise<void> {
    this.#setState("connecting");
    try {
      await this.#cc.connect();
    } catch (err) {
      this.#lastError = errorInfo(err).message;
      this.#setState("closed");
      throw err;
    }
    this.#lastError = undefined;
    this.#generation++;
    this.#setState("connected");
  }

  exec<T>(fn: (sender: RedisSender) => Promise<T>, options?: { deadlineMs?: number }): Promise<T> {
    return this.#cc.exec(undefined, (cluster) => fn(this.#senderFor(cluster)), options);
  }

  async readGroup(
    streams: readonly string[],
    ids: readonly string[],
    head: readonly string[],
    blockMs: number,
  ): Promise<unknown> {
    const bySlot = new Map<number, { streams: string[]; ids: string[] }>();
    streams.forEach((s, i) => {
      const slot = slotOf(s);
      const group = bySlot.get(slot) ?? bySlot.set(slot, { streams: [], ids: [] }).get(slot)!;
      group.streams.push(s);
      group.ids.push(ids[i]);
    });
    const groups = [...bySlot.values()];
    if (groups.length === 1) {
      return await this.#read(() => this.#cc.readGroup(streams, ids, head, blockMs));
    }
    // COUNT is shared out, so the merged reply stays within what the reader asked for.
    const count = head.findIndex((a) => a.toUpperCase() === "COUNT");
    const share = count < 0
      ? undefined
      : Math.max(1, Math.ceil(Number(head[count + 1]) / groups.length));
    const partHead = share === undefined
      ? head
      : head.map((a, i) => i === count + 1 ? String(share) : a);
    const open = new Set(groups.map((g) => g.streams[0]));
    let woken = false;
    const wakeOthers = () => {
      if (woken) return;
      woken = true;
      for (const key of open) void this.#cc.unblock(key);
    };
    const reads = groups.map(async (g) => {
      try {
        const reply = await this.#cc.readGroup(g.streams, g.ids, partHead, blockMs) as Reply;
        open.delete(g.streams[0]);
        if (reply && reply.some(([, entries]) => entries.length > 0)) wakeOthers();
        return reply;
      } catch (err) {
        open.delete(g.streams[0]);
        throw err;
      }
    });
    const results = await Promise.allSettled(reads);
    const merged = results.flatMap((r) => r.status === "fulfilled" && r.value ? r.value : []);
    if (merged.length > 0) return merged;
    const failed = results.find((r) => r.status === "rejected");
    if (failed) return await this.#read(() => Promise.reject(failed.reason));
    return null;
  }

  async unblockReader(): Promise<void> {
    await this.#cc.unblockAll();
  }

  async ping(timeoutMs = 1000): Promise<number> {
    try {
      if (!(await this.#cc.ready(timeoutMs))) throw new Error(this.#cc.lastError ?? "not ready");
      return this.#cc.latencyMs ?? 0;
    } finally {
      this.#lastCheck = new Date();
    }
  }

  waitConnected(signal?: AbortSignal): Promise<boolean> {
    return waitConnected(this, signal);
  }

  /**
   * Masters stopped answering (PINGs keep failing): "reconnecting" until every master answers
   * again, refreshing the slot map between checks (a failover names a new master). node-redis
   * reconnects the node clients itself.
   */
  forceReconnect(reason: string): void {
    if (this.#state !== "connected" || this.#recovering) return;
    this.#lastError = reason;
    this.#log.warn("Redis Cluster not ready: {reason}; refreshing the slot map", { reason });
    this.#setState("reconnecting");
    this.#recovering = this.#recover().finally(() => this.#recovering = undefined);
  }

  async close(): Promise<void> {
    this.#closing.abort();
    this.#setState("closed");
    await this.#cc.close();
  }

  #senderFor(cluster: ClusterClient): RedisSender {
    if (this.#sender?.cluster !== cluster) {
      this.#sender = { cluster, sender: routedSender(cluster) };
    }
    return this.#sender.sender;
  }

  /** A read; a failure that means the topology changed counts as a new generation. */
  async #read(read: () => Promise<unknown>): Promise<unknown> {
    try {
      return await read();
    } catch (err) {
      // ClusterConnection.readGroup maps a moved slot, a failover or a lost socket to
      // NotConnectedError after refreshing the map: look for own pending entries again.
      if (err instanceof NotConnectedError) this.#generation++;
      throw err;
    }
  }

  async #recover(): Promise<void> {
    for (let attempt = 1; !this.#closing.signal.aborted; attempt++) {
      this.#cc.refresh();
      await delay(exponentialBackoff(attempt, { minMs: 100, maxMs: 3000 }), this.#closing.signal);
      if (this.#closing.signal.aborted) return;
      if (await this.#cc.ready(1000)) {
        this.#lastError = undefined;
        this.#generation++;
        this.#log.info("Redis Cluster ready again after {attempts} check(s)", {
          attempts: attempt,
        });
        this.#setState("connected");
        return;
      }
    }
  }

  #setState(state: ConnectionState): void {
    if (this.#state === state || this.#state === "closed") return;
    this.#state = state;
    for (const l of this.#listeners) {
      try {
        l(state);
      } catch (err) {
        this.#log.error("State listener failed: {error}", { error: errorInfo(err).message });
      }
    }
  }
}
