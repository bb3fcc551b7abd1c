/**
 * Starts a throwaway Redis Cluster for tests: 3 masters and 3 replicas (by default), each a
 * `redis-server --cluster-enabled yes` on free loopback ports in its own temporary directory
 * (started through `tests/support/redis_server.ts`), joined with
 * `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`, and ready once every node
 * reports `cluster_state:ok`, knows every other node, and every master has a replica in sync.
 * The returned {@linkcode RedisClusterFixture} hands out node-redis cluster clients, tells which
 * node serves a slot, kills and restarts nodes (to exercise failovers), and stops everything with
 * `stop()` (also via `await using` or `Cleanup.use`).
 *
 * @module
 */

import { createClient, createCluster, type RedisClusterType } from "@redis/client";
import { followFailovers } from "../../src/redis/cluster.ts";
import { slotOf } from "../../src/stream/keys.ts";
import { RedisServer } from "./redis_server.ts";
import { freePort, waitFor } from "./wait.ts";

export { slotOf };

/** A node-redis v5 cluster client speaking RESP2 without modules, scripts or type mapping. */
export type RedisClusterClient = RedisClusterType;

/** Options of {@linkcode startRedisCluster}. */
export interface StartRedisClusterOptions {
  /** Masters. Default: 3 (the least `redis-cli --cluster create` accepts). */
  masters?: number;
  /** Replicas per master. Default: 1. */
  replicasPerMaster?: number;
  /**
   * `cluster-node-timeout` in ms: how long a master may be unreachable before its replica takes
   * over. Default: 3000 (short, for failover tests; long enough for a busy machine).
   */
  nodeTimeoutMs?: number;
  /** Start each node with `--appendonly yes`. Default: false. */
  appendonly?: boolean;
  /** Extra `redis-server` arguments for every node, appended last. */
  args?: string[];
  /**
   * `requirepass` (and `masterauth`) of every node; the fixture's own connections and its
   * clients use it. Default: none.
   */
  password?: string;
  /** Deadline for the whole start (nodes, create, every node ok), in ms. Default: 60000. */
  startTimeoutMs?: number;
}

/** Options of {@linkcode RedisClusterFixture.client}. */
export interface RedisClusterClientOptions {
  /** ACL user name for every node. Default: none. */
  username?: string;
  /** Password for every node. Default: the cluster's `password`. */
  password?: string;
  /** Deadline for the first connection, in ms. Default: 15000. */
  connectTimeoutMs?: number;
}

/** A slot range and the nodes that serve it, from `CLUSTER SLOTS`. */
export interface SlotRange {
  start: number;
  end: number;
  /** Port of the master serving the range. */
  master: number;
  /** Ports of its replicas. */
  replicas: number[];
}

const HOST = "127.0.0.1";
const PORT_ATTEMPTS = 5;

/**
 * A running Redis Cluster started by {@linkcode startRedisCluster}. Nodes are addressed by their
 * port (stable across `restart`).
 */
export class RedisClusterFixture implements AsyncDisposable {
  /** Every node, in the order given to `redis-cli --cluster create` (masters first). */
  readonly nodes: readonly RedisServer[];
  readonly #clients = new Map<RedisClusterClient, () => void>();
  readonly #timeoutMs: number;
  readonly #password?: string;
  #stopped = false;

  private constructor(nodes: RedisServer[], timeoutMs: number, password?: string) {
    this.nodes = nodes;
    this.#timeoutMs = timeoutMs;
    this.#password = password;
  }

  /** Ports of every node. */
  get ports(): number[] {
    return this.nodes.map((n) => n.port);
  }

  /** The seed list `127.0.0.1:P1,127.0.0.1:P2,…` of every node. */
  get seeds(): string {
    return this.nodes.map((n) => `${HOST}:${n.port}`).join(",");
  }

  /** `REDIS_CLUSTER_NODES` naming every node, to spread into a service's env. */
  env(): { REDIS_CLUSTER_NODES: string } {
    return { REDIS_CLUSTER_NODES: this.seeds };
  }

  /** The node listening on `port`. */
  node(port: number): RedisServer {
    const node = this.nodes.find((n) => n.port === port);
    if (!node) throw new Error(`No cluster node on port ${port}`);
    return node;
  }

  /**
   * A new connected RESP2 cluster client seeded with every node, tracked and closed by `stop()`.
   * It follows MOVED/ASK and, through `followFailovers` (src/redis/cluster.ts), the new master
   * after a failover; its `error` events are swallowed (a killed node must not crash the test).
   */
  async client(opts: RedisClusterClientOptions = {}): Promise<RedisClusterClient> {
    const { connectTimeoutMs = 15_000 } = opts;
    const rootNodes = this.nodes.map((n) => ({ socket: { host: HOST, port: n.port } }));
    const client: RedisClusterClient = createCluster({
      RESP: 2,
      rootNodes,
      defaults: {
        username: opts.username,
        password: opts.password ?? this.#password,
        socket: {
          connectTimeout: 2_000,
          reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 500),
        },
      },
    });
    client.on("error", () => {});
    this.#clients.set(client, followFailovers(client, rootNodes));
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        client.connect(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`Cluster client did not connect within ${connectTimeoutMs} ms`)),
            connectTimeoutMs,
          );
        }),
      ]);
    } catch (err) {
      this.#clients.get(client)?.();
      this.#clients.delete(client);
      destroyQuietly(client);
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  /**
   * Runs one command on the node on `port` over a short-lived plain (non-cluster) connection
   * and returns its reply. Rejects when the node does not answer within 2 s.
   */
  async command(port: number, args: string[]): Promise<unknown> {
    const client = createClient({
      RESP: 2,
      password: this.#password,
      socket: { host: HOST, port, connectTimeout: 2_000, reconnectStrategy: false },
    });
    client.on("error", () => {});
    try {
      await withTimeout(client.connect(), 2_000, `connect to ${port}`);
      return await withTimeout(client.sendCommand(args), 2_000, `${args[0]} on ${port}`);
    } finally {
      destroyQuietly(client);
    }
  }

  /** `CLUSTER INFO` of the node on `port`, as a field → value map. */
  async clusterInfo(port: number): Promise<Record<string, string>> {
    return parseInfo(String(await this.command(port, ["CLUSTER", "INFO"])));
  }

  /** The slot ranges and their nodes as the node on `port` (default: any running node) sees them. */
  async slotRanges(port?: number): Promise<SlotRange[]> {
    const ask = port ?? this.#running()[0]?.port;
    if (ask === undefined) throw new Error("No cluster node is running");
    const reply = await this.command(ask, ["CLUSTER", "SLOTS"]) as unknown[][];
    return reply.map((range) => ({
      start: Number(range[0]),
      end: Number(range[1]),
      master: Number((range[2] as unknown[])[1]),
      replicas: range.slice(3).map((r) => Number((r as unknown[])[1])),
    }));
  }

  /** Port of the master that serves `slot` (as a running node sees it). */
  async masterOfSlot(slot: number): Promise<number> {
    const range = (await this.slotRanges()).find((r) => r.start <= slot && slot <= r.end);
    if (!range) throw new Error(`No node serves slot ${slot}`);
    return range.master;
  }

  /** Port of the master that serves `key`'s slot. */
  masterOf(key: string): Promise<number> {
    return this.masterOfSlot(slotOf(key));
  }

  /** Ports of the nodes that currently serve slots as masters (as a running node sees it). */
  async masters(): Promise<number[]> {
    return [...new Set((await this.slotRanges()).map((r) => r.master))].sort((a, b) => a - b);
  }

  /** Kills the node on `port` with SIGKILL (its dir and `nodes.conf` stay for `restart`). */
  async kill(port: number): Promise<void> {
    await this.node(port).kill();
  }

  /** Starts the killed node on `port` again; it rejoins the cluster (as a replica when replaced). */
  async restart(port: number): Promise<void> {
    await this.node(port).restart();
  }

  /**
   * Waits until the running nodes all say `cluster_state:ok`, every slot is served by a running
   * master, and (with `replicasInSync`, the default) each such master has a replica in sync.
   * After a kill: the replica has taken over. Default deadline: the start deadline.
   */
  async waitHealthy(
    opts: { timeoutMs?: number; replicasInSync?: boolean } = {},
  ): Promise<void> {
    const { timeoutMs = this.#timeoutMs, replicasInSync = true } = opts;
    await waitFor(() => this.#healthy(replicasInSync), {
      timeoutMs,
      intervalMs: 200,
      message: "every running cluster node to report cluster_state:ok",
    });
  }

  /**
   * After `kill(port)` of the master serving `slot`: waits until another node serves it and the
   * cluster is ok again. Resolves to the new master's port.
   */
  async waitFailover(slot: number, killedPort: number, timeoutMs = this.#timeoutMs) {
    await waitFor(async () => {
      const master = await this.masterOfSlot(slot);
      return master !== killedPort && await this.#healthy(false);
    }, { timeoutMs, intervalMs: 200, message: `a replica to take over slot ${slot}` });
    return await this.masterOfSlot(slot);
  }

  /** Closes the tracked clients and stops every node (SIGTERM, then SIGKILL). Safe to call twice. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const [client, unfollow] of this.#clients) {
      unfollow();
      destroyQuietly(client);
    }
    this.#clients.clear();
    await Promise.all(this.nodes.map((n) => n.stop()));
  }

  /** Same as {@linkcode RedisClusterFixture.stop}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #running(): RedisServer[] {
    return this.nodes.filter((n) => n.running);
  }

  async #healthy(replicasInSync: boolean): Promise<boolean> {
    const running = this.#running();
    const runningPorts = new Set(running.map((n) => n.port));
    for (const node of running) {
      const info = await this.clusterInfo(node.port);
      if (info.cluster_state !== "ok") return false;
      if (Number(info.cluster_slots_ok) !== 16_384) return false;
      if (Number(info.cluster_known_nodes) < this.nodes.length) return false;
    }
    const ranges = await this.slotRanges();
    for (const range of ranges) {
      if (!runningPorts.has(range.master)) return false;
    }
    if (replicasInSync) {
      for (const master of new Set(ranges.map((r) => r.master))) {
        const repl = parseInfo(String(await this.command(master, ["INFO", "replication"])));
        const online = Object.entries(repl).some(([k, v]) =>
          /^slave\d+$/.test(k) && v.includes("state=online")
        );
        if (!online) return false;
      }
    }
    return true;
  }

  /** Same as {@linkcode startRedisCluster}. */
  static async start(opts: StartRedisClusterOptions = {}): Promise<RedisClusterFixture> {
    const {
      masters = 3,
      replicasPerMaster = 1,
      nodeTimeoutMs = 3_000,
      appendonly = false,
      startTimeoutMs = 60_000,
    } = opts;
    if (masters < 3) throw new RangeError("redis-cli --cluster create needs at least 3 masters");
    const deadline = Date.now() + startTimeoutMs;
    const count = masters * (1 + replicasPerMaster);
    const auth = opts.password === undefined
      ? []
      : ["--requirepass", opts.password, "--masterauth", opts.password];
    const nodes: RedisServer[] = [];
    try {
      const started = await Promise.allSettled(
        Array.from({ length: count }, () =>
          startNode({
            appendonly,
            nodeTimeoutMs,
            args: [...auth, ...(opts.args ?? [])],
            timeoutMs: Math.max(1_000, deadline - Date.now()),
          })),
      );
      for (const s of started) if (s.status === "fulfilled") nodes.push(s.value);
      const failed = started.find((s) => s.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;

      await createCluster_(nodes.map((n) => n.port), replicasPerMaster, deadline, opts.password);
      const fixture = new RedisClusterFixture(nodes, startTimeoutMs, opts.password);
      await fixture.waitHealthy({ timeoutMs: Math.max(1_000, deadline - Date.now()) });
      return fixture;
    } catch (err) {
      await Promise.all(nodes.map((n) => n.stop()));
      throw err;
    }
  }
}

/**
 * Starts a Redis Cluster (see {@linkcode StartRedisClusterOptions} for the defaults) and resolves
 * once it is healthy. Rejects (after stopping every node it started) on the deadline.
 */
export function startRedisCluster(
  opts: StartRedisClusterOptions = {},
): Promise<RedisClusterFixture> {
  return RedisClusterFixture.start(opts);
}

/**
 * One cluster-enabled node on a free port whose cluster bus port (`--cluster-port`) is free too;
 * other ports are tried when either turns out to be taken.
 */
async function startNode(
  o: { appendonly: boolean; nodeTimeoutMs: number; args: string[]; timeoutMs: number },
): Promise<RedisServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const port = freePort();
    const busPort = freePort();
    try {
      return await RedisServer.start({
        port,
        appendonly: o.appendonly,
        startTimeoutMs: o.timeoutMs,
        args: [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          "nodes.conf",
          "--cluster-port",
          String(busPort),
          "--cluster-node-timeout",
          String(o.nodeTimeoutMs),
          // A replica must be allowed to take over however recently it talked to its master.
          "--cluster-replica-validity-factor",
          "0",
          ...o.args,
        ],
      });
    } catch (err) {
      lastError = err;
      if (!/address already in use/i.test(String(err))) throw err;
    }
  }
  throw lastError;
}

/** Runs `redis-cli --cluster create` on `ports`, killing it at the deadline. */
async function createCluster_(
  ports: number[],
  replicas: number,
  deadline: number,
  password: string | undefined,
): Promise<void> {
  const child = new Deno.Command("redis-cli", {
    args: [
      ...(password === undefined ? [] : ["-a", password, "--no-auth-warning"]),
      "--cluster",
      "create",
      ...ports.map((p) => `${HOST}:${p}`),
      "--cluster-replicas",
      String(replicas),
      "--cluster-yes",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  }, Math.max(1_000, deadline - Date.now()));
  try {
    const out = await child.output();
    if (!out.success) {
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      throw new Error(
        `redis-cli --cluster create failed (code ${out.code}${
          out.signal ? `, ${out.signal}` : ""
        }):\n${text.trimEnd().split("\n").slice(-30).join("\n")}`,
      );
    }
  } finally {
    clearTimeout(timer);
  }
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    p.catch(() => {});
  }
}

function destroyQuietly(client: { isOpen: boolean; destroy(): void }): void {
  try {
    if (client.isOpen) client.destroy();
  } catch {
    // Already closed.
  }
}
