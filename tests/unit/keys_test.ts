/**
 * Unit tests of the key schema (src/stream/keys.ts): Redis' hash-tag rule, CRC16 slots (known
 * values from the Redis documentation; tests/integration/keys_slot_test.ts compares with
 * `CLUSTER KEYSLOT` on a real cluster), FNV-1a partitions (known vectors), partition keys, and
 * that every key derived from a stream or a partition stays in its slot.
 */
import {
  crc16,
  fnv1a32,
  hashTag,
  KeySchema,
  partitionKey,
  partitionKeys,
  partitionOf,
  slotOf,
} from "../../src/stream/keys.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";

const keys = new KeySchema({ group: "billing" });

Deno.test("hashTag() follows Redis' rule: the first {…} with non-empty content", () => {
  assertEquals(hashTag("{user1000}.following"), "user1000");
  assertEquals(hashTag("foo{bar}{zap}"), "bar");
  assertEquals(hashTag("foo{{bar}}zap"), "{bar");
  assertEquals(hashTag("foo{}{bar}"), undefined);
  assertEquals(hashTag("{}"), undefined);
  assertEquals(hashTag("plain"), undefined);
  assertEquals(hashTag("open{only"), undefined);
  assertEquals(hashTag("close}only{"), undefined);
});

Deno.test("slotOf() is CRC16/XMODEM mod 16384, as CLUSTER KEYSLOT", () => {
  assertEquals(crc16(new TextEncoder().encode("123456789")), 0x31c3); // The CRC's check value.
  assertEquals(slotOf("somekey"), 11058);
  assertEquals(slotOf("foo{hash_tag}"), 2515);
  assertEquals(slotOf("foo"), 12182);
  assertEquals(slotOf("{user1000}.following"), slotOf("{user1000}.followers"));
  assertEquals(slotOf("foo{}{bar}"), slotOf("foo{}{bar}")); // Whole key hashed.
  for (const key of ["", "a", "ü", "日本", "{x}", "x".repeat(1000)]) {
    const slot = slotOf(key);
    assert(Number.isInteger(slot) && slot >= 0 && slot < 16384, key);
  }
});

Deno.test("fnv1a32() and partitionOf(): FNV-1a 32-bit of the UTF-8 bytes, modulo N", () => {
  assertEquals(fnv1a32(""), 0x811c9dc5);
  assertEquals(fnv1a32("a"), 0xe40c292c);
  assertEquals(fnv1a32("foobar"), 0xbf9cf968);
  // UTF-8 bytes, not UTF-16 code units: "é" is 0xc3 0xa9.
  const bytes = (0x811c9dc5 ^ 0xc3) >>> 0;
  const first = Math.imul(bytes, 0x01000193) >>> 0;
  assertEquals(fnv1a32("é"), Math.imul((first ^ 0xa9) >>> 0, 0x01000193) >>> 0);
  assertEquals(partitionOf("foobar", 8), 0xbf9cf968 % 8);
  assertEquals(partitionOf("a", 1), 0);
  assertEquals(partitionOf("", 1024), 0x811c9dc5 % 1024);
  for (let i = 0; i < 100; i++) {
    const p = partitionOf(`order-${i}`, 7);
    assert(Number.isInteger(p) && p >= 0 && p < 7);
  }
  assertThrows(() => partitionOf("a", 0), RangeError);
  assertThrows(() => partitionOf("a", 1.5), RangeError);
});

Deno.test("partitionKey() is {S:i} and every partition key has its own tag", () => {
  assertEquals(partitionKey("orders", 3), "{orders:3}");
  assertEquals(partitionKeys("orders", 3), ["{orders:0}", "{orders:1}", "{orders:2}"]);
  assertEquals(hashTag(partitionKey("orders", 3)), "orders:3");
  assertThrows(() => partitionKey("{orders}", 0), TypeError);
  assertThrows(() => partitionKey("orders", -1), RangeError);
  // Eight partitions spread over more than one slot.
  assert(new Set(partitionKeys("orders", 8).map(slotOf)).size > 1);
});

Deno.test("every key derived from a partition shares the partition's slot", () => {
  for (const p of partitionKeys("orders", 16)) {
    const slot = slotOf(p);
    for (
      const key of [
        keys.dlq(p),
        keys.checkpoint(p),
        keys.dedup(p, "idem-1"),
        keys.dedup(p, "{weird}key"),
        keys.lease(p),
        keys.outbox(p),
      ]
    ) {
      assertEquals(slotOf(key), slot, key);
    }
  }
  assertEquals(keys.lease("{orders:3}"), "{orders:3}:lease:billing");
  assertEquals(keys.outbox("{orders:3}"), "{orders:3}:outbox");
});

Deno.test("keys derived from a tagged stream keep its tag: dead letters, checkpoint, dedup", () => {
  for (const stream of ["{orders}", "events.{orders}", "{orders}.events"]) {
    const slot = slotOf(stream);
    assertEquals(slotOf(keys.dlq(stream)), slot);
    assertEquals(slotOf(keys.checkpoint(stream)), slot);
    assertEquals(slotOf(keys.dedup(stream, "k")), slot);
    assertEquals(slotOf(keys.outbox(stream)), slot);
    assertEquals(keys.dlq(stream), `${stream}:dlq`);
  }
});

Deno.test("the membership record is one per stream and group, {S}:members:<group>", () => {
  assertEquals(keys.members("orders"), "{orders}:members:billing");
  assertEquals(new KeySchema({ group: "g2" }).members("orders"), "{orders}:members:g2");
  assertEquals(slotOf(keys.members("orders")), slotOf("orders"));
});

Deno.test("relayMark() lands in the target's slot, tagged or not", () => {
  for (
    const target of ["audit", "{orders}.audit", "a{b}c", "x{y", "{orders:2}", "日本.audit"]
  ) {
    const mark = keys.relayMark(target, "{orders:1}", "1-0", 0);
    assertEquals(slotOf(mark), slotOf(target), `${target} → ${mark}`);
  }
  assertEquals(keys.relayMark("audit", "{o}", "5-1", 0), "{audit}:relayed:{o}:5-1:0");
  assertEquals(keys.relayMark("{a}.x", "{o}", "5-1", 2), "{a}.x:relayed:{o}:5-1:2");
  assertThrows(() => keys.relayMark("a{}b", "{o}", "1-0", 0), TypeError);
});
