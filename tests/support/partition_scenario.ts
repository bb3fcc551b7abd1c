/**
 * The partition rebalance scenario shared by `tests/e2e/partitions_test.ts` (single Redis) and
 * `tests/e2e/cluster_partitions_test.ts` (Redis Cluster): a producer numbering each aggregate's
 * entries 1, 2, 3, … while spawned instances share the partitions; one instance SIGKILLed, one
 * joining; then every entry forwarded once, each aggregate's entries in order.
 *
 * @module
 */

import { assertEquals } from "./assert.ts";
import type { ServiceProcess } from "./service.ts";
import type { StreamClient, StreamEntry } from "./streams.ts";
import { waitFor } from "./wait.ts";
import { KeySchema } from "../../src/stream/keys.ts";

/** The owner named by each partition's lease (undefined where there is none), in key order. */
export async function leaseOwners(
  client: StreamClient,
  partitionKeys: readonly string[],
  group: string,
): Promise<(string | undefined)[]> {
  const keys = new KeySchema({ group });
  const out: (string | undefined)[] = [];
  for (const key of partitionKeys) {
    const v = await client.sendCommand(["GET", keys.lease(key)]);
    out.push(v === null ? undefined : String(v));
  }
  return out;
}

/** True when every lease is held by one of `names`, their counts differing by one at most. */
export function evenOver(leases: readonly (string | undefined)[], names: string[]): boolean {
  if (leases.some((o) => o === undefined || !names.includes(o))) return false;
  const counts = names.map((n) => leases.filter((o) => o === n).length);
  return Math.max(...counts) - Math.min(...counts) <= 1;
}

/** A producer running until `stop()`: `seq` holds each aggregate's last number written. */
export interface Producer {
  seq: Map<string, number>;
  stop(): Promise<void>;
}

/**
 * Writes entries for 30 aggregates in turn (`write(aggregate, n)`, n = 1, 2, 3, … per aggregate),
 * pausing 10 ms every 10 entries (a pace, not a wait), until `stop()`.
 */
export function startProducer(write: (aggregate: string, n: number) => Promise<void>): Producer {
  const seq = new Map<string, number>();
  let producing = true;
  const running = (async () => {
    for (let i = 0; producing; i++) {
      const agg = `agg-${i % 30}`;
      const n = (seq.get(agg) ?? 0) + 1;
      await write(agg, n);
      seq.set(agg, n);
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 10));
    }
  })();
  return {
    seq,
    stop: async () => {
      producing = false;
      await running;
    },
  };
}

/** What `killAndJoin` needs. */
export interface KillAndJoin {
  /** The partitions' lease owners, as `leaseOwners` reads them. */
  owners: () => Promise<(string | undefined)[]>;
  /** Entries forwarded so far (over every output). */
  forwarded: () => Promise<number>;
  producer: Producer;
  /** The instance to SIGKILL, the others by name, and a start of a new one. */
  victim: ServiceProcess;
  survivors: Record<string, ServiceProcess>;
  join: (name: string) => Promise<ServiceProcess>;
  /** A rebalance's deadline. */
  rebalanceMs: number;
  /** Prints what is left where (leases, pending) when the forwarded entries do not all arrive. */
  report: () => Promise<void>;
}

/**
 * After 300 forwarded entries SIGKILLs `victim` and waits until the survivors share every lease
 * evenly; starts "p4" and waits for its share; stops the producer and waits until every entry it
 * wrote is forwarded (on a timeout: `report()`, then each instance's WARN, ERROR and partition
 * log lines). Returns the new instance and the number of entries written.
 */
export async function killAndJoin(
  o: KillAndJoin,
): Promise<{ joined: ServiceProcess; total: number }> {
  await waitFor(async () => await o.forwarded() >= 300, {
    timeoutMs: 30_000,
    message: "300 forwarded entries before the kill",
  });
  await o.victim.kill();
  const survivors = Object.keys(o.survivors);
  await waitFor(async () => evenOver(await o.owners(), survivors), {
    timeoutMs: o.rebalanceMs,
    message: `every partition spread over ${survivors.join(", ")} after a SIGKILL`,
  });
  const joined = await o.join("p4");
  const all = [...survivors, "p4"];
  await waitFor(async () => evenOver(await o.owners(), all), {
    timeoutMs: o.rebalanceMs,
    message: `every partition spread over ${all.join(", ")}`,
  });
  await o.producer.stop();
  const total = [...o.producer.seq.values()].reduce((a, b) => a + b, 0);
  try {
    await waitFor(async () => await o.forwarded() >= total, {
      timeoutMs: 60_000,
      message: `${total} forwarded entries`,
    });
  } catch (err) {
    await o.report();
    for (const svc of [...Object.values(o.survivors), joined]) {
      console.log(
        svc.output().split("\n").filter((l) => /WARN|ERROR|partition/.test(l)).join("\n"),
      );
    }
    throw err;
  }
  return { joined, total };
}

/**
 * Asserts that `out` holds every entry `seq` counts, once and each aggregate's in order (payload
 * `{ n }`, numbered by `startProducer`).
 */
export function assertInOrder(out: readonly StreamEntry[], seq: ReadonlyMap<string, number>): void {
  const last = new Map<string, number>();
  for (const e of out) {
    const agg = e.fields.aggregateId;
    const n = JSON.parse(e.fields.payload).n as number;
    assertEquals(n, (last.get(agg) ?? 0) + 1, `order of ${agg}`);
    last.set(agg, n);
  }
  for (const [agg, n] of seq) assertEquals(last.get(agg), n, `all of ${agg}`);
  const total = [...seq.values()].reduce((a, b) => a + b, 0);
  assertEquals(out.length, total, "each entry forwarded exactly once");
}
