/**
 * Which live instance owns which partition (README "Redis Cluster and partitioned streams"):
 * pure. Every instance computes the same answer from the same sorted member list, so there is
 * no coordinator; leases (leases.ts) only make the answer safe while instances disagree.
 *
 * The algorithm is rendezvous (highest-random-weight) hashing with bounded loads:
 * - Let N partitions, m members, N = q·m + r. At most r members may own q + 1 partitions, the
 *   others q: counts differ by at most one (the caps add up to N, so each is met exactly).
 * - Partitions are placed in index order; each goes to the member that ranks highest for it
 *   (a hash of member and partition) among those still under their cap.
 *
 * Plain rendezvous hashing moves only the partitions of a member that leaves (or the ones a new
 * member ranks first for), but its spread is uneven; a sorted round-robin is even but moves most
 * partitions when a member joins or leaves. With the caps, the spread is exactly even, and most
 * partitions keep their owner across a join or a leave (each keeps its preferred member unless
 * that member is full), so fewer hand-overs pause a partition.
 */

/** The partitions (indexes, ascending) each member owns; every member has an entry. */
export type Assignment = Map<string, number[]>;

/**
 * Assigns `partitions` partitions to `members` (order and duplicates do not matter). Returns
 * an empty map when there is no member.
 * @throws {RangeError} when `partitions` is not a non-negative integer.
 */
export function assignPartitions(members: readonly string[], partitions: number): Assignment {
  if (!Number.isInteger(partitions) || partitions < 0) {
    throw new RangeError(`partitions must be a non-negative integer, got ${partitions}`);
  }
  const sorted = [...new Set(members)].sort();
  const out: Assignment = new Map(sorted.map((m) => [m, []]));
  if (sorted.length === 0) return out;
  const q = Math.floor(partitions / sorted.length);
  let extraLeft = partitions % sorted.length; // Members that may still take q + 1.
  const counts = new Map(sorted.map((m) => [m, 0]));
  for (let p = 0; p < partitions; p++) {
    let best: string | undefined;
    let bestWeight = -1;
    for (const member of sorted) {
      const count = counts.get(member)!;
      if (count > q || (count === q && extraLeft === 0)) continue;
      const w = weight(member, p);
      if (w > bestWeight) {
        best = member;
        bestWeight = w;
      }
    }
    // Some member is always under its cap: the caps add up to `partitions`.
    const owner = best!;
    const count = counts.get(owner)! + 1;
    counts.set(owner, count);
    if (count === q + 1) extraLeft--;
    out.get(owner)!.push(p);
  }
  return out;
}

/** The partitions `member` owns under `assignPartitions(members, partitions)` (none if absent). */
export function partitionsOf(
  member: string,
  members: readonly string[],
  partitions: number,
): number[] {
  return assignPartitions(members, partitions).get(member) ?? [];
}

/** The owner of each partition, by index (`undefined` when there is no member). */
export function ownersByPartition(
  members: readonly string[],
  partitions: number,
): (string | undefined)[] {
  const owners: (string | undefined)[] = new Array(partitions).fill(undefined);
  for (const [member, owned] of assignPartitions(members, partitions)) {
    for (const p of owned) owners[p] = member;
  }
  return owners;
}

const encoder = new TextEncoder();

/**
 * The rendezvous weight of `member` for partition `p`: FNV-1a of `member`, NUL, `p`, then the
 * MurmurHash3 finalizer (FNV-1a alone mixes the last bytes poorly). Ties are broken by the
 * member order (sorted), so the result stays deterministic.
 */
function weight(member: string, p: number): number {
  let h = 0x811c9dc5;
  for (const b of encoder.encode(`${member}\u0000${p}`)) {
    h ^= b;
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
