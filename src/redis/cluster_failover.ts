/**
 * Following failovers with node-redis' cluster client: it refreshes its slot
 * map only on `MOVED`/`ASK` replies, so after a master dies `followFailovers`
 * refreshes it whenever a node connection drops (see below). Used by
 * `ClusterConnection` and by the test cluster's clients.
 */
import type { RedisClusterType } from "npm:@redis/client@^5.12.1";

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
  let running = false;
  /** A drop seen while a rediscovery ran: its answer may predate the failover. */
  let again = false;
  let last = 0;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const later = (ms: number) => {
    timer ??= setTimeout(() => {
      timer = undefined;
      refresh();
    }, ms);
  };
  const refresh = () => {
    if (stopped || !cluster.isOpen) return;
    if (running) {
      again = true;
      return;
    }
    const wait = last + minIntervalMs - Date.now();
    if (wait > 0) return later(wait);
    running = true;
    again = false;
    last = Date.now();
    rediscover(cluster, seeds).then(
      () => {
        running = false;
        if (again) refresh();
      },
      () => {
        // No seed answered, or a master of the answer could not be reached (the failover is
        // not done yet): try again, without waiting for another drop (the dead node's client
        // may be gone from the map, and with it the events that would have asked).
        running = false;
        later(minIntervalMs);
      },
    );
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

/**
 * Reloads `cluster`'s slot map from a random seed now (node-redis' internal
 * `_slots.rediscover`, the call it makes itself after a `MOVED`).
 */
export function rediscover(cluster: ClusterClient, seeds: readonly RootNode[]): Promise<void> {
  // The internal `_slots` is typed, but not with `rediscover`'s loose argument: see above.
  const slots = (cluster as unknown as { _slots: Rediscoverable })._slots;
  const seed = seeds[Math.floor(Math.random() * seeds.length)];
  return slots.rediscover({ options: seed });
}
