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

Deno.test("encodeSettle() with an outbox: cross-slot forwards as outbox|target, emits led by target", () => {
  const op = {
    id: "1-0",
    copy: { kind: "forward" as const, targets: ["out", "{s}.audit"], headers: "{}" },
    emits: [{ targets: ["out", "{s}.e"], fields: ["event", "x"] }],
  };
  const dead = {
    id: "2-0",
    copy: { kind: "dead_letter" as const, target: "dlq-elsewhere", fields: ["error", "e"] },
  };
  const { keys, args } = encodeSettle({ ...batch, outbox: "{s}:outbox" }, [op, dead]);
  assertEquals(keys, [
    "{s}",
    "{s}:checkpoint:g",
    "{s}:outbox",
    "{s}.audit",
    "{s}.e",
    "dlq-elsewhere",
  ]);
  assertEquals(args.slice(5), [
    "0",
    // forward: 2 targets: "out" through the outbox KEYS[3], "{s}.audit" directly (KEYS[4])
    ..."1-0 f 0 2".split(" "),
    "3|out",
    "4",
    "1",
    "{}",
    // two writes: to the outbox (4 fields: target, out, event, x), to KEYS[5] directly
    ..."2 3 4 target out event x 5 2 event x".split(" "),
    // a dead-letter copy is never routed through the outbox
    ..."2-0 d 0 1 6 2 error e 0".split(" "),
  ]);
  // Without the outbox, the same ops name their targets directly.
  const plain = encodeSettle(batch, [op]);
  assertEquals(plain.keys, ["{s}", "{s}:checkpoint:g", "out", "{s}.audit", "{s}.e"]);
  assertEquals(plain.args.slice(10, 12), ["3", "4"]);
});

Deno.test("outbox entries: the target field first, then the copy's fields as they were", () => {
  const copy = ["event", "e", "headers", "{}", "event", "dup"];
  const fields = outboxFields("out", copy);
  assertEquals(fields, ["target", "out", ...copy]);
  assertEquals(decodeOutboxEntry(fields), { target: "out", fields: copy });
  assertEquals(decodeOutboxEntry(["target", "out"]), undefined, "nothing to copy");
  assertEquals(decodeOutboxEntry(["event", "out", "a", "b"]), undefined, "no target field");
  assertEquals(decodeOutboxEntry(["target", "", "a", "b"]), undefined, "empty target");
  assertEquals(decodeOutboxEntry(["target", "out", "a"]), undefined, "odd field count");
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
