/**
 * Replica counts from `CLUSTER NODES` (the parsing pure, the reads cached), for the relay's
 * replication check before it deletes an outbox entry (README "Forwarding across slots").
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

/** The replica counts of every master, read from `CLUSTER NODES` by `load` and cached. */
export class ReplicaCounts {
  readonly #load: () => Promise<string>;
  #known?: { at: number; byMaster: Map<string, number> };
  #loading?: Promise<{ at: number; byMaster: Map<string, number> }>;

  constructor(load: () => Promise<string>) {
    this.#load = load;
  }

  /**
   * How many replicas the master at `address` (`host:port`) has, read again when the counts
   * are older than `maxAgeMs` or do not name it; 0 when they still do not. One read at a time.
   */
  async of(address: string, maxAgeMs: number): Promise<number> {
    let known = this.#known;
    if (!known || Date.now() - known.at > maxAgeMs || !known.byMaster.has(address)) {
      this.#loading ??= this.#read().finally(() => this.#loading = undefined);
      known = await this.#loading;
    }
    return known.byMaster.get(address) ?? 0;
  }

  /** The counts are read again at the next `of`. */
  forget(): void {
    this.#known = undefined;
  }

  async #read(): Promise<{ at: number; byMaster: Map<string, number> }> {
    const known = { at: Date.now(), byMaster: replicaCounts(await this.#load()) };
    this.#known = known;
    return known;
  }
}
