/**
 * Reading replica counts from `CLUSTER NODES` (pure), for the relay's replication check before
 * it deletes an outbox entry (README "Forwarding across slots").
 */

/**
 * Per master (`host:port`, as `CLUSTER NODES` names it), how many replicas the cluster names
 * for it in a `CLUSTER NODES` reply, pure. Replicas flagged `fail` count: a replica cut off for
 * a while is flagged so, and can still come back and be promoted with what it had (what its
 * master wrote meanwhile lost); `CLUSTER SLOTS` leaves such replicas out. Nodes still in
 * handshake or without an address do not count.
 */
export function replicaCounts(nodes: string): Map<string, number> {
  const addressOf = new Map<string, string>();
  const counts = new Map<string, number>();
  for (const line of nodes.split("\n")) {
    const [id, address, flagList, masterId] = line.trim().split(" ");
    if (!id || !address || !flagList) continue;
    const flags = flagList.split(",");
    if (flags.includes("handshake") || flags.includes("noaddr")) continue;
    if (flags.includes("master")) addressOf.set(id, address.split("@")[0]);
    else if (flags.includes("slave") && masterId && masterId !== "-") {
      counts.set(masterId, (counts.get(masterId) ?? 0) + 1);
    }
  }
  const byMaster = new Map<string, number>();
  for (const [id, address] of addressOf) byMaster.set(address, counts.get(id) ?? 0);
  return byMaster;
}
