/**
 * The hand-over decision of partitioned streams (README "Partitioned streams"), pure: from the
 * partitions the assignment gives this instance and the state of the ones it has, which leases
 * to try to take and which partitions to hand over. `partitions.ts` acts on it.
 */

/** Where one of this instance's partitions is. */
export type PartitionPhase =
  /** Lease held; its pending entries of other consumers are being taken over (not read yet). */
  | "taking_over"
  /** Lease held; read. */
  | "reading"
  /** Lease held; no longer read: its held entries finish and settle, then the lease is released. */
  | "draining";

/** What to do in one ownership turn. */
export interface HandoverPlan {
  /** Partition keys assigned here and not held: try to take their leases (SET NX). */
  acquire: string[];
  /** Partition keys held but no longer assigned here: stop reading them and hand them over. */
  drain: string[];
  /** Partition keys held (whatever their phase): renew their leases. */
  renew: string[];
}

/**
 * The plan for `assigned` (this instance's partition keys under the current assignment) and
 * `held` (the partitions whose leases it holds, by phase). A draining partition is neither
 * acquired again nor drained twice: it is released first (a later turn may take it again),
 * so its held entries never run beside a new read of it. Keys come out in the given order.
 */
export function planHandover(
  assigned: readonly string[],
  held: ReadonlyMap<string, PartitionPhase>,
): HandoverPlan {
  const want = new Set(assigned);
  const acquire = assigned.filter((k) => !held.has(k));
  const drain: string[] = [];
  const renew: string[] = [];
  for (const [key, phase] of held) {
    renew.push(key);
    if (!want.has(key) && phase !== "draining") drain.push(key);
  }
  return { acquire, drain, renew };
}

/**
 * How often an instance heartbeats, recomputes the assignment and renews its leases: every
 * third of the lease (so two turns can fail before a lease expires), at most once a second (so
 * a join or a leave is seen within about a second of slack beyond the lease).
 */
export function ownershipIntervalMs(leaseMs: number): number {
  return Math.max(100, Math.min(1000, Math.floor(leaseMs / 3)));
}
