/**
 * Redis Cluster access (README "Redis Cluster and partitioned streams"): node-redis' cluster
 * client, made to follow failovers.
 */
import type { RedisClusterType } from "@redis/client";

/** A RESP2 node-redis cluster client without modules, scripts or type mapping. */
export type ClusterClient = RedisClusterType;

/** A seed node as node-redis' `rootNodes` takes it. */
export interface RootNode {
  socket: { host: string; port: number };
}

/** What node-redis' cluster slots object offers for a refresh (internal API, see below). */
interface Rediscoverable {
  rediscover(startWith: { options?: unknown }): Promise<void>;
}

/**
 * Makes `cluster` refresh its slot map whenever a node's connection drops. node-redis v5
 * refreshes the map only on `MOVED`/`ASK` replies; a command routed to a master that died waits
 * for that node forever (or fails at once without an offline queue), even after its replica took
 * over. With this, each drop starts a rediscovery (at most one at a time, at most one every
 * `minIntervalMs`, starting from a random seed); once the cluster has failed over, the dead node
 * leaves the map, its client is destroyed, and commands go to the new master.
 *
 * Uses `cluster._slots.rediscover`, an internal of node-redis 5 (`@redis/client`
 * lib/cluster/cluster-slots), the same call it makes itself after a `MOVED`. Returns a function
 * that stops following.
 */
export function followFailovers(
  cluster: ClusterClient,
  seeds: readonly RootNode[],
  minIntervalMs = 250,
): () => void {
  // The internal `_slots` is typed, but not with `rediscover`'s loose argument: see above.
  const slots = (cluster as unknown as { _slots: Rediscoverable })._slots;
  let running = false;
  let last = 0;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const refresh = () => {
    if (stopped || running || !cluster.isOpen) return;
    const wait = last + minIntervalMs - Date.now();
    if (wait > 0) {
      timer ??= setTimeout(() => {
        timer = undefined;
        refresh();
      }, wait);
      return;
    }
    running = true;
    last = Date.now();
    const seed = seeds[Math.floor(Math.random() * seeds.length)];
    slots.rediscover({ options: seed }).catch(() => {
      // No seed answered (yet): the next drop or retry of the node's client tries again.
    }).finally(() => {
      running = false;
    });
  };
  cluster.on("node-reconnecting", refresh);
  cluster.on("node-error", refresh);
  return () => {
    stopped = true;
    clearTimeout(timer);
    cluster.off("node-reconnecting", refresh);
    cluster.off("node-error", refresh);
  };
}
