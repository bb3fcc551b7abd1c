/**
 * Unit tests of the pure reply parsers of src/stream/group_ops.ts
 * (`parseGroups`, `parseConsumers`) and of `pairsToRecord` in
 * src/redis/reply.ts, on RESP2 replies as Redis 7 sends them.
 */
import { pairsToRecord } from "../../src/redis/reply.ts";
import { parseConsumers, parseGroups } from "../../src/stream/group_ops.ts";
import { assertEquals } from "../support/assert.ts";

Deno.test("pairsToRecord() pairs names with values and ignores a trailing odd element", () => {
  assertEquals(pairsToRecord(["a", "1", "b", "2"]), { a: "1", b: "2" });
  assertEquals(pairsToRecord(["a", "1", "dangling"]), { a: "1" });
  assertEquals(pairsToRecord([]), {});
});

Deno.test("parseGroups() reads XINFO GROUPS, a nil lag as null", () => {
  const reply = [
    [
      "name",
      "g1",
      "consumers",
      2,
      "pending",
      3,
      "last-delivered-id",
      "5-0",
      "entries-read",
      5,
      "lag",
      1,
    ],
    [
      "name",
      "g2",
      "consumers",
      0,
      "pending",
      0,
      "last-delivered-id",
      "0-0",
      "entries-read",
      null,
      "lag",
      null,
    ],
  ];
  assertEquals(parseGroups(reply), [
    { name: "g1", consumers: 2, pending: 3, lastDeliveredId: "5-0", reportedLag: 1 },
    { name: "g2", consumers: 0, pending: 0, lastDeliveredId: "0-0", reportedLag: null },
  ]);
});

Deno.test("parseConsumers() reads XINFO CONSUMERS", () => {
  const reply = [["name", "c1", "pending", 4, "idle", 1500, "inactive", 1500]];
  assertEquals(parseConsumers(reply), [{ name: "c1", pending: 4, idleMs: 1500 }]);
});
