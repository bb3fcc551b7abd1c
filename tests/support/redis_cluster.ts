/**
 * Starts a throwaway Redis Cluster for tests: 3 masters and 3 replicas (by default), each a
 * `redis-server --cluster-enabled yes` on free loopback ports in its own temporary directory
 * (started through `tests/support/redis_server.ts`), joined with
 * `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`, and ready once every node
 * reports `cluster_state:ok`, knows every other node, and every master has a replica in sync.
 * The returned {@linkcode RedisClusterFixture} hands out node-redis cluster clients, tells which
 * node serves a slot, kills and restarts nodes (to exercise failovers), kills the master of a key
 * and waits for its replica (`killMasterOf`), lets a master's replicas fall behind so that a
 * failover loses its latest writes (`detachReplicas`), moves a slot to another master while clients use it
 * (`migrateSlot`), and stops everything with `stop()` (also via `await using` or `Cleanup.use`).
 * `routedSender` lets the stream helpers of `streams.ts` run on a cluster client;
 * `cluster_producer.ts` appends entries that count only once `WAIT` confirmed them.
 *
 * With `tls` every node also serves TLS on a port of its own (`tlsPortOf`), speaks TLS on the
 * cluster bus and for replication (`tls-cluster yes`, `tls-replication yes`), so that a TLS
 * client is told the nodes' TLS ports by `CLUSTER SLOTS`; `seeds` and `env()` then name the TLS
 * ports. The plaintext ports stay open for the fixture's own administration (`command`, `client`,
 * `redis-cli --cluster create`, the health checks), and nodes are still addressed by them.
 *
 * @module
 */

import { createClient, createCluster, type RedisClusterType } from "@redis/client";
import { followFailovers } from "../../src/redis/cluster.ts";
import { routedSender } from "../../src/redis/cluster_link.ts";
import type { RedisSender } from "../../src/redis/link.ts";
import { Cleanup } from "./cleanup.ts";
import { slotOf } from "../../src/stream/keys.ts";
import { RedisServer } from "./redis_server.ts";
import { type Pki, redisTlsArgs } from "./tls.ts";
import { freePort, waitFor, withTimeout } from "./wait.ts";

export { slotOf };
/**
 * A cluster client as the client type of `streams.ts`: each command to the master serving its
 * first key (the service's own routing, `commandKey`; MOVED/ASK followed by node-redis).
 */
export { routedSender };

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
  /**
   * Serve TLS on every node with `pki`'s server certificate (see the module doc), asking TLS
   * clients for a certificate as `authClients` says (default "no"). Nodes present `pki`'s client
   * certificate to each other (cluster bus, replication). Default: plaintext only.
   */
  tls?: { pki: Pki; authClients?: "yes" | "optional" | "no" };
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

/** The address every node listens on. */
export const HOST = "127.0.0.1";
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
  /** The password of every node (`requirepass`), if any. */
  readonly password?: string;
  /** Plaintext port → TLS port of each node, with `tls`. */
  readonly #tlsPorts?: ReadonlyMap<number, number>;
  #stopped = false;

  private constructor(
    nodes: RedisServer[],
    timeoutMs: number,
    password?: string,
    tlsPorts?: ReadonlyMap<number, number>,
  ) {
    this.nodes = nodes;
    this.#timeoutMs = timeoutMs;
    this.password = password;
    this.#tlsPorts = tlsPorts;
  }

  /** Ports of every node (the plaintext ones, with `tls` too). */
  get ports(): number[] {
    return this.nodes.map((n) => n.port);
  }

  /** Whether every node serves TLS (started with `tls`). */
  get tls(): boolean {
    return this.#tlsPorts !== undefined;
  }

  /** The TLS port of the node whose plaintext port is `port` (started with `tls`). */
  tlsPortOf(port: number): number {
    const tlsPort = this.#tlsPorts?.get(port);
    if (tlsPort === undefined) {
      throw new Error(`No TLS port for node ${port} (started without tls?)`);
    }
    return tlsPort;
  }

  /** The seed list `127.0.0.1:P1,127.0.0.1:P2,…` of every node (their TLS ports with `tls`). */
  get seeds(): string {
    return this.nodes.map((n) => `${HOST}:${this.#tlsPorts?.get(n.port) ?? n.port}`).join(",");
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
        password: opts.password ?? this.password,
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
   * and returns its reply. Rejects when the node does not answer within `timeoutMs` (default 2 s).
   */
  async command(port: number, args: string[], timeoutMs = 2_000): Promise<unknown> {
    const client = createClient({
      RESP: 2,
      password: this.password,
      socket: { host: HOST, port, connectTimeout: 2_000, reconnectStrategy: false },
    });
    client.on("error", () => {});
    try {
      await withTimeout(client.connect(), 2_000, `connect to ${port}`);
      return await withTimeout(client.sendCommand(args), timeoutMs, `${args[0]} on ${port}`);
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

  /**
   * Kills (SIGKILL) the master serving `key`'s slot and waits until its replica took the slot
   * over and the cluster is ok again. Resolves to the killed and the new master's ports.
   */
  async killMasterOf(
    key: string,
    timeoutMs = this.#timeoutMs,
  ): Promise<{ killed: number; master: number }> {
    const slot = slotOf(key);
    const killed = await this.masterOfSlot(slot);
    await this.kill(killed);
    return { killed, master: await this.waitFailover(slot, killed, timeoutMs) };
  }

  /**
   * Makes the replicas of the master on `port` fall behind it: freezes them (SIGSTOP) and closes
   * the master's replication links (`CLIENT KILL TYPE replica`), so what the master writes from
   * now on reaches no replica, and a failover then loses it (the replication lag a crash can
   * catch, made certain). Resolves to the frozen replicas' ports; `node(p).resume()` them.
   */
  async detachReplicas(port: number): Promise<number[]> {
    // The master's own view (INFO replication: slaveN:ip=…,port=…,state=online): CLUSTER SLOTS
    // of a node can leave out a replica it briefly suspects.
    const repl = parseInfo(String(await this.command(port, ["INFO", "replication"])));
    const replicas = Object.entries(repl)
      .filter(([k]) => /^slave\d+$/.test(k))
      .map(([, v]) => Number(/port=(\d+)/.exec(v)?.[1]));
    if (replicas.length === 0) throw new Error(`The master on ${port} has no replica`);
    for (const r of replicas) await this.node(r).pause();
    const closed = Number(await this.command(port, ["CLIENT", "KILL", "TYPE", "replica"]));
    if (closed !== replicas.length) {
      for (const r of replicas) await this.node(r).resume();
      throw new Error(`${port} closed ${closed} replication links, expected ${replicas.length}`);
    }
    return replicas;
  }

  /** The cluster node id of the node on `port` (`CLUSTER MYID`). */
  async nodeId(port: number): Promise<string> {
    return String(await this.command(port, ["CLUSTER", "MYID"]));
  }

  /**
   * Moves `slot` to the master on `toPort` (default: a running master other than its own) the way
   * `redis-cli --cluster reshard` does: `SETSLOT IMPORTING` on the target, `MIGRATING` on the
   * source, `MIGRATE` of its keys in rounds of `keysPerRound` (default 10) until the source holds
   * none (clients meanwhile get `ASK`/`TRYAGAIN`), then `SETSLOT NODE` on the target, the source
   * and every other master. `onRound` runs after each round of `MIGRATE` (e.g. to let traffic in).
   * Resolves to the source and target ports once every running node sees the target serve it.
   */
  async migrateSlot(
    slot: number,
    opts: { toPort?: number; keysPerRound?: number; onRound?: () => Promise<void> } = {},
  ): Promise<{ from: number; to: number }> {
    const from = await this.masterOfSlot(slot);
    const masters = await this.masters();
    const to = opts.toPort ?? masters.find((m) => m !== from);
    if (to === undefined || to === from) throw new Error(`No other master to move slot ${slot} to`);
    const [fromId, toId] = [await this.nodeId(from), await this.nodeId(to)];
    const s = String(slot);
    await this.command(to, ["CLUSTER", "SETSLOT", s, "IMPORTING", fromId]);
    await this.command(from, ["CLUSTER", "SETSLOT", s, "MIGRATING", toId]);
    const auth = this.password === undefined ? [] : ["AUTH", this.password];
    const count = String(opts.keysPerRound ?? 10);
    while (true) {
      const keys = await this.command(from, ["CLUSTER", "GETKEYSINSLOT", s, count]) as string[];
      if (keys.length === 0) break;
      await this.command(from, [
        "MIGRATE",
        HOST,
        String(to),
        "",
        "0",
        "5000",
        ...auth,
        "KEYS",
        ...keys,
      ], 10_000);
      await opts.onRound?.();
    }
    await this.command(to, ["CLUSTER", "SETSLOT", s, "NODE", toId]);
    await this.command(from, ["CLUSTER", "SETSLOT", s, "NODE", toId]);
    for (const m of masters) {
      if (m !== from && m !== to) await this.command(m, ["CLUSTER", "SETSLOT", s, "NODE", toId]);
    }
    await waitFor(async () => {
      for (const node of this.#running()) {
        const range = (await this.slotRanges(node.port)).find((r) =>
          r.start <= slot && slot <= r.end
        );
        if (range?.master !== to) return false;
      }
      return true;
    }, {
      timeoutMs: this.#timeoutMs,
      intervalMs: 100,
      message: `every node to see slot ${slot} on ${to}`,
    });
    return { from, to };
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
    const tls = opts.tls && [
      ...redisTlsArgs(opts.tls.pki, opts.tls.authClients ?? "no"),
      "--tls-cluster",
      "yes",
      "--tls-replication",
      "yes",
      // What a node presents when it is the client (cluster bus, replication): the server
      // certificate is for serverAuth only.
      "--tls-client-cert-file",
      opts.tls.pki.clientCert,
      "--tls-client-key-file",
      opts.tls.pki.clientKey,
    ];
    const nodes: RedisServer[] = [];
    const tlsPorts = tls ? new Map<number, number>() : undefined;
    try {
      const started = await Promise.allSettled(
        Array.from({ length: count }, () =>
          startNode({
            appendonly,
            nodeTimeoutMs,
            args: [...auth, ...(tls ?? []), ...(opts.args ?? [])],
            tls: tls !== undefined,
            timeoutMs: Math.max(1_000, deadline - Date.now()),
          })),
      );
      for (const s of started) {
        if (s.status !== "fulfilled") continue;
        nodes.push(s.value.node);
        if (s.value.tlsPort !== undefined) tlsPorts?.set(s.value.node.port, s.value.tlsPort);
      }
      const failed = started.find((s) => s.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;

      await createCluster_(nodes.map((n) => n.port), replicasPerMaster, deadline, opts.password);
      const fixture = new RedisClusterFixture(nodes, startTimeoutMs, opts.password, tlsPorts);
      await fixture.waitHealthy({ timeoutMs: Math.max(1_000, deadline - Date.now()) });
      return fixture;
    } catch (err) {
      await Promise.all(nodes.map((n) => n.stop()));
      throw err;
    }
  }
}

/** What the body of a {@linkcode clusterTest} gets. */
export interface ClusterTestContext {
  cleanup: Cleanup;
  cluster: RedisClusterFixture;
  /** A routed sender over a client of `cluster` (see {@linkcode routedSender}). */
  redis: RedisSender;
}

/**
 * A test with a Redis Cluster of its own (`startRedisCluster(options)`), stopped at the end with
 * everything else the body hands to `cleanup`. Deno's op and resource sanitizers are off for it:
 * node-redis cluster clients keep timers for their topology refresh.
 */
export function clusterTest(
  name: string,
  options: StartRedisClusterOptions,
  fn: (t: ClusterTestContext) => Promise<void>,
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      await using cleanup = new Cleanup();
      const cluster = cleanup.use(await startRedisCluster(options));
      await fn({ cleanup, cluster, redis: routedSender(await cluster.client()) });
    },
  });
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
 * One cluster-enabled node on a free port whose cluster bus port (`--cluster-port`) is free too
 * (and, with `tls`, its `--tls-port`); other ports are tried when one turns out to be taken.
 */
async function startNode(
  o: {
    appendonly: boolean;
    nodeTimeoutMs: number;
    args: string[];
    tls: boolean;
    timeoutMs: number;
  },
): Promise<{ node: RedisServer; tlsPort?: number }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const port = freePort();
    const busPort = freePort();
    const tlsPort = o.tls ? freePort() : undefined;
    try {
      const node = await RedisServer.start({
        port,
        appendonly: o.appendonly,
        startTimeoutMs: o.timeoutMs,
        args: [
          ...(tlsPort === undefined ? [] : ["--tls-port", String(tlsPort)]),
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
      return { node, tlsPort };
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

/** Closes a node-redis client, ignoring one that is closed already. */
export function destroyQuietly(client: { isOpen: boolean; destroy(): void }): void {
  try {
    if (client.isOpen) client.destroy();
  } catch {
    // Already closed.
  }
}
