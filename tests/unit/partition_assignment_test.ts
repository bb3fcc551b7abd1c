/**
 * Unit tests of the partition assignment (src/stream/partitions/assignment.ts): every partition
 * owned exactly once, counts differing by at most one, the same answer whatever the member
 * order, and fewer partitions moved on a join or a leave than a sorted round-robin would move.
 */
import {
  assignPartitions,
  ownersByPartition,
  partitionsOf,
} from "../../src/stream/partitions/assignment.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";

function members(n: number, prefix = "svc-"): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i}`);
}

function moved(before: (string | undefined)[], after: (string | undefined)[]): number {
  return before.filter((owner, p) => owner !== after[p]).length;
}

function roundRobin(list: string[], partitions: number): string[] {
  const sorted = [...list].sort();
  return Array.from({ length: partitions }, (_, p) => sorted[p % sorted.length]);
}

Deno.test("every partition has one owner and counts differ by at most one", () => {
  for (const m of [1, 2, 3, 4, 5, 7, 16]) {
    for (const n of [0, 1, 2, 3, 8, 10, 64, 1024]) {
      const assignment = assignPartitions(members(m), n);
      assertEquals(assignment.size, m);
      const all = [...assignment.values()].flat().sort((a, b) => a - b);
      assertEquals(all, Array.from({ length: n }, (_, i) => i), `m=${m} n=${n}`);
      const counts = [...assignment.values()].map((ps) => ps.length);
      assert(Math.max(...counts) - Math.min(...counts) <= 1, `m=${m} n=${n}: ${counts}`);
      for (const ps of assignment.values()) {
        assertEquals(ps, [...ps].sort((a, b) => a - b), "ascending");
      }
    }
  }
});

Deno.test("the assignment depends on the set of members only", () => {
  const list = ["pod-b", "pod-a", "pod-c"];
  const expected = assignPartitions(list, 8);
  for (const order of [["pod-a", "pod-b", "pod-c"], ["pod-c", "pod-a", "pod-b", "pod-a"]]) {
    assertEquals(assignPartitions(order, 8), expected);
  }
  assertEquals(partitionsOf("pod-a", list, 8), expected.get("pod-a"));
  assertEquals(partitionsOf("pod-z", list, 8), []);
  const owners = ownersByPartition(list, 8);
  for (const [member, owned] of expected) {
    assertEquals(owned, owners.flatMap((o, p) => (o === member ? [p] : [])));
  }
});

Deno.test("no members: nothing is owned", () => {
  assertEquals(assignPartitions([], 8).size, 0);
  assertEquals(ownersByPartition([], 3), [undefined, undefined, undefined]);
  assertThrows(() => assignPartitions(["a"], -1), RangeError);
  assertThrows(() => assignPartitions(["a"], 1.5), RangeError);
});

Deno.test("a join or a leave moves fewer partitions than a sorted round-robin", () => {
  let ours = 0;
  let rr = 0;
  for (const [m, n] of [[3, 8], [3, 64], [4, 64], [5, 100], [8, 256], [2, 16]]) {
    const before = members(m);
    const joined = [...before, "svc-new"];
    const left = before.filter((_, i) => i !== 1);
    for (const after of [joined, left]) {
      ours += moved(ownersByPartition(before, n), ownersByPartition(after, n));
      rr += moved(roundRobin(before, n), roundRobin(after, n));
    }
    // A leave must move at least the partitions of the member that left.
    const lost = assignPartitions(before, n).get("svc-1")!.length;
    assert(moved(ownersByPartition(before, n), ownersByPartition(left, n)) >= lost);
  }
  assert(ours < rr / 2, `moved ${ours} partitions; round-robin would move ${rr}`);
});
