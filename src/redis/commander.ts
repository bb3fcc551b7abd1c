/**
 * One way to send a command, for code that must work on a single Redis and on a Redis Cluster
 * alike (README "Redis Cluster and partitioned streams"): a `Commander` sends raw commands routed
 * by their first key (ignored on a single node), and a `Script` runs Lua by EVALSHA, loading it
 * on the node that answers NOSCRIPT. Every key a script touches is in KEYS, in one slot.
 */
import type { ClusterClient } from "./cluster.ts";
import type { RedisLink } from "./connection.ts";

/** Sends one raw command; on a cluster, to the master serving `firstKey`'s slot. */
export interface Commander {
  /** The raw RESP2 reply (node-redis' `sendCommand`), or the error Redis answered. */
  send(firstKey: string | undefined, args: readonly string[]): Promise<unknown>;
}

/** The part of a node-redis client (or the service's `RedisClient`) a commander needs. */
export interface RawSender {
  sendCommand(args: string[]): Promise<unknown>;
}

/** A commander over one connection (single Redis, or one cluster node): the key is ignored. */
export function nodeCommander(client: RawSender): Commander {
  return { send: (_key, args) => client.sendCommand([...args]) };
}

/**
 * A commander over the service's `RedisLink` (single Redis or Sentinel): each command
 * through `exec`, so through the breaker and under its deadline; the key is ignored.
 */
export function managedCommander(connection: RedisLink): Commander {
  return { send: (_key, args) => connection.exec((c) => c.sendCommand([...args])) };
}

/** A commander over a node-redis cluster client: routed by `firstKey` (MOVED/ASK followed). */
export function clusterCommander(cluster: ClusterClient): Commander {
  return { send: (key, args) => cluster.sendCommand(key, false, [...args]) };
}

/** A Lua script run by EVALSHA (EVAL-free), loaded with SCRIPT LOAD on NOSCRIPT. */
export class Script {
  /** The Lua source. */
  readonly source: string;
  #sha?: string;

  constructor(source: string) {
    this.source = source;
  }

  /**
   * Runs the script on the node serving `keys[0]` (every key must share its slot on a cluster);
   * resolves to Redis' raw RESP2 reply.
   */
  async run(cmd: Commander, keys: readonly string[], args: readonly string[]): Promise<unknown> {
    const first = keys[0];
    if (!this.#sha) this.#sha = String(await cmd.send(first, ["SCRIPT", "LOAD", this.source]));
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await cmd.send(first, ["EVALSHA", this.#sha, ...tail]);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      // This node never saw the script (another master, a restart, a failover): load it there.
      this.#sha = String(await cmd.send(first, ["SCRIPT", "LOAD", this.source]));
      return await cmd.send(first, ["EVALSHA", this.#sha, ...tail]);
    }
  }
}
