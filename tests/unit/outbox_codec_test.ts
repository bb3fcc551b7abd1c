/**
 * The outbox's pure parts (README "Redis Cluster and partitioned streams"): which targets go
 * through the outbox, the settle encoding in cross-slot mode, the outbox entry format and the
 * relay script's arguments and reply, and when the mode is on. No Redis.
 */
import { assert, assertEquals, assertThrows } from "../support/assert.ts";
import { encodeSettle } from "../../src/stream/consumer/settle_codec.ts";
import {
  decodeOutboxEntry,
  decodeRelay,
  encodeRelay,
  outboxFields,
  OutboxRoute,
} from "../../src/stream/consumer/outbox_codec.ts";
import { sameSlot } from "../../src/stream/keys.ts";
import { loadConfig } from "../../src/config.ts";
import { consumerSettings } from "../../src/stream/consumer/settings.ts";

const batch = {
  stream: "{s}",
  checkpointKey: "{s}:checkpoint:g",
  group: "g",
  consumer: "c",
  now: "2024-01-01T00:00:00.000Z",
  dedupTtlS: 60,
};

Deno.test("OutboxRoute sends targets in another slot through the outbox, only in cross-slot mode", () => {
  assert(!sameSlot("{s}", "out"));
  const route = new OutboxRoute("{s}", "{s}:outbox");
  assertEquals(route.outbox, "{s}:outbox");
  assert(route.via("out"));
  assert(route.via("out"), "remembered");
  assert(!route.via("{s}.audit"), "same tag: same slot");
  assert(!route.via("s"), "the untagged name hashes like the tag");
  const off = new OutboxRoute("{s}", undefined);
  assert(!off.via("out"));
});

Deno.test("encodeSettle() with an outbox: cross-slot forwards as outbox|index|target, emits led by target and origin", () => {
  const op = {
    id: "1-0",
    copy: { kind: "forward" as const, targets: ["out", "{s}.audit"], headers: "{}" },
    emits: [
      { targets: ["out", "{s}.e"], fields: ["event", "x"] },
      { targets: ["out"], fields: ["event", "y"] },
    ],
  };
  const dead = {
    id: "2-0",
    copy: { kind: "dead_letter" as const, target: "dlq-elsewhere", fields: ["error", "e"] },
  };
  const plainForward = {
    id: "3-0",
    copy: { kind: "forward" as const, targets: ["out"], headers: "{}" },
  };
  const { keys, args } = encodeSettle({ ...batch, outbox: "{s}:outbox" }, [
    op,
    dead,
    plainForward,
  ]);
  assertEquals(keys, [
    "{s}",
    "{s}:checkpoint:g",
    "{s}:outbox",
    "{s}.audit",
    "{s}.e",
    "dlq-elsewhere",
  ]);
  assertEquals(args.slice(5), [
    // no bare acknowledgements; the id range of the other ops
    ..."0 1-0 3-0".split(" "),
    // one group of plain forwards: 1 target, "out" (copy 0) through the outbox KEYS[3]; the
    // text that extends own headers; "=": headers given; 1 id; no "#" fields; ids; headers
    ..."1 1 3|0|out".split(" "),
    '"sourceStream":"{s}","sourceId":"',
    ..."= 1 0 3-0 {}".split(" "),
    // forward: 2 targets: "out" (copy 0) through the outbox KEYS[3], "{s}.audit" directly
    ..."1-0 f 0 2".split(" "),
    "3|0|out",
    "4",
    "1",
    "{}",
    // three writes: to the outbox (target, out, origin: copy 1 of 1-0 to out, then the fields),
    // to KEYS[5] directly, to the outbox again (copy 2 of 1-0 to out)
    ..."3 3 6 target out origin 1-0:1 event x 5 2 event x".split(" "),
    ..."3 6 target out origin 1-0:2 event y".split(" "),
    // a dead-letter copy is never routed through the outbox
    ..."2-0 d 0 1 6 2 error e 0".split(" "),
  ]);
  // Without the outbox, the same ops name their targets directly.
  const plain = encodeSettle(batch, [op]);
  assertEquals(plain.keys, ["{s}", "{s}:checkpoint:g", "out", "{s}.audit", "{s}.e"]);
  assertEquals(plain.args.slice(9, 15), ["1-0", "f", "0", "2", "3", "4"]);
});

Deno.test("outbox entries: the target, then the origin, then the copy's fields as they were", () => {
  const copy = ["event", "e", "headers", "{}", "event", "dup"];
  const fields = outboxFields("out", "17-3", 2, copy);
  assertEquals(fields, ["target", "out", "origin", "17-3:2", ...copy]);
  assertEquals(decodeOutboxEntry(fields), {
    target: "out",
    sourceId: "17-3",
    index: 2,
    fields: copy,
  });
  const origin = ["origin", "1-0:0"];
  assertEquals(decodeOutboxEntry(["target", "out", ...origin]), undefined, "nothing to copy");
  assertEquals(decodeOutboxEntry(["event", "out", ...origin, "a", "b"]), undefined, "no target");
  assertEquals(decodeOutboxEntry(["target", "", ...origin, "a", "b"]), undefined, "empty target");
  assertEquals(decodeOutboxEntry(["target", "out", ...origin, "a"]), undefined, "odd count");
  assertEquals(decodeOutboxEntry(["target", "out", "a", "b", "c", "d"]), undefined, "no origin");
  for (const bad of ["1-0", "1-0:", "x:0", "1-0:-1", "1:0"]) {
    assertEquals(
      decodeOutboxEntry(["target", "out", "origin", bad, "a", "b"]),
      undefined,
      `origin ${bad}`,
    );
  }
});

Deno.test("encodeRelay()/decodeRelay(): the target first, one mark per copy; the reply per copy", () => {
  const { keys, args } = encodeRelay("out", ["m1", "m2"], [["a", "1"], ["b", "2", "c", "3"]], 60);
  assertEquals(keys, ["out", "m1", "m2"]);
  assertEquals(args, ["60", "2", "a", "1", "4", "b", "2", "c", "3"]);
  assertThrows(() => encodeRelay("out", ["m1"], [], 60), RangeError);
  assertEquals(decodeRelay([1, 0], 2), ["copied", "already"]);
  assertEquals(decodeRelay("target_type", 2), ["target_type", "target_type"]);
  assertThrows(() => decodeRelay([1], 2), TypeError);
  assertThrows(() => decodeRelay([5], 1), TypeError);
});

Deno.test("consumerSettings(): cross-slot mode with REDIS_CLUSTER_NODES only", () => {
  const base = { SERVICE_NAME: "svc", STREAM: "{orders}" };
  const cluster = loadConfig({ ...base, REDIS_CLUSTER_NODES: "10.0.0.1:7000" });
  assertEquals(consumerSettings(cluster).outboxAcrossSlots, true);
  const single = loadConfig({ ...base, REDIS_HOST: "localhost", REDIS_PORT: "6380" });
  assertEquals(consumerSettings(single).outboxAcrossSlots, false);
});
