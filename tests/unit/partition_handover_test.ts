/**
 * The hand-over decision of partitioned streams (src/stream/consumer/handover.ts) and the
 * fenced settle's encoding and reply (settle_codec.ts): which leases to take, which partitions
 * to hand over and which to renew, from the assignment and the partitions held. No Redis.
 */
import { assert, assertEquals } from "../support/assert.ts";
import {
  ownershipIntervalMs,
  type PartitionPhase,
  planHandover,
} from "../../src/stream/consumer/handover.ts";
import { encodeSettle } from "../../src/stream/consumer/settle_codec.ts";
import { decodeSettle } from "../../src/stream/consumer/settle_reply.ts";
import { SETTLE, SETTLE_FENCED } from "../../src/stream/consumer/settle_script.ts";

const held = (entries: [string, PartitionPhase][]) => new Map(entries);

Deno.test("planHandover() takes the assigned free partitions and renews the held ones", () => {
  assertEquals(planHandover(["{s:0}", "{s:2}"], held([])), {
    acquire: ["{s:0}", "{s:2}"],
    drain: [],
    renew: [],
  });
  assertEquals(planHandover(["{s:0}", "{s:2}"], held([["{s:0}", "reading"]])), {
    acquire: ["{s:2}"],
    drain: [],
    renew: ["{s:0}"],
  });
});

Deno.test("planHandover() hands over what is no longer assigned, once, and keeps renewing it", () => {
  const now = held([["{s:0}", "reading"], ["{s:1}", "taking_over"], ["{s:3}", "draining"]]);
  const plan = planHandover(["{s:0}"], now);
  assertEquals(plan.drain, ["{s:1}"], "a draining partition is not drained twice");
  assertEquals(plan.renew, ["{s:0}", "{s:1}", "{s:3}"], "renewed until released");
  assertEquals(plan.acquire, []);
});

Deno.test("planHandover() does not take back a partition still being handed over", () => {
  const plan = planHandover(["{s:3}"], held([["{s:3}", "draining"]]));
  assertEquals(plan.acquire, [], "released first, taken again in a later turn");
  assertEquals(plan.drain, []);
});

Deno.test("planHandover() with no partition assigned hands everything over", () => {
  const plan = planHandover([], held([["{s:0}", "reading"], ["{s:1}", "reading"]]));
  assertEquals(plan.drain, ["{s:0}", "{s:1}"]);
});

Deno.test("ownershipIntervalMs() is a third of the lease, at most a second", () => {
  assertEquals(ownershipIntervalMs(1500), 500);
  assertEquals(ownershipIntervalMs(10_000), 1000);
  assert(ownershipIntervalMs(1000) * 3 <= 1000);
});

Deno.test("encodeSettle() puts the lease key third; SETTLE_FENCED checks it before SETTLE", () => {
  const batch = {
    stream: "{s:1}",
    checkpointKey: "{s:1}:checkpoint:g",
    group: "g",
    consumer: "c",
    now: "2026-01-01T00:00:00Z",
    dedupTtlS: 60,
  };
  const ops = [{ id: "1-1", copy: { kind: "forward" as const, targets: ["out"], headers: "{}" } }];
  const plain = encodeSettle(batch, ops);
  const fenced = encodeSettle({ ...batch, leaseKey: "{s:1}:lease:g" }, ops);
  assertEquals(plain.keys, ["{s:1}", "{s:1}:checkpoint:g", "out"]);
  assertEquals(fenced.keys, ["{s:1}", "{s:1}:checkpoint:g", "{s:1}:lease:g", "out"]);
  assertEquals(fenced.args.slice(0, 6), plain.args.slice(0, 6));
  // The forward target's key index moves from 3 to 4 (id range, one group of plain forwards
  // to one target, the text that extends own headers, its ids, their headers).
  const prefix = '"sourceStream":"{s:1}","sourceId":"';
  const forward = (k: string) => ["1-1", "1-1", "1", "1", k, prefix, "=", "1", "0", "1-1", "{}"];
  assertEquals(plain.args.slice(6), forward("3"));
  assertEquals(fenced.args.slice(6), forward("4"));
  assert(SETTLE_FENCED.source.startsWith("#!lua\n"), "the shebang stays first");
  assert(SETTLE_FENCED.source.includes("lease_held(KEYS[3], ARGV[2])"));
  assert(SETTLE_FENCED.source.endsWith(SETTLE.source.slice("#!lua\n".length)));
});

Deno.test("decodeSettle() reads a fenced reply as every op fenced, nothing written", () => {
  assertEquals(decodeSettle("fenced", 2, 3), {
    acked: [0, 0],
    results: ["fenced", "fenced", "fenced"],
    checkpointWritten: true,
    fenced: true,
  });
});
