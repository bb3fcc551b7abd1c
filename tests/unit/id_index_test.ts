/**
 * Unit tests of src/stream/consumer/id_index.ts: the off-heap map from id numbers to slots
 * agrees with a `Map` under random churn (collisions, deletions in probe runs, growth).
 */
import { assert, assertEquals } from "../support/assert.ts";
import { IdIndex } from "../../src/stream/consumer/id_index.ts";

/** A small deterministic PRNG (mulberry32), so a failure repeats. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("IdIndex gets, sets, replaces and deletes keys up to 2^53", () => {
  const index = new IdIndex(16);
  const big = 2 ** 53 - 1;
  index.set(big, 7);
  index.set(0, 1);
  index.set(1764520000000 * 2048 + 5, 3);
  assertEquals([index.get(big), index.get(0), index.get(1764520000000 * 2048 + 5)], [7, 1, 3]);
  index.set(0, 9);
  assertEquals([index.get(0), index.size], [9, 3], "replaced, not added");
  assert(index.delete(big) && !index.delete(big) && !index.has(big));
  assertEquals([index.get(big), index.get(12345), index.size], [-1, -1, 2]);
});

Deno.test("IdIndex agrees with a Map under churn: sequential ids, collisions, deletions, growth", () => {
  for (const seed of [1, 2, 3]) {
    const random = rng(seed);
    const index = new IdIndex(16);
    const model = new Map<number, number>();
    const base = 1764520000000 * 2048;
    let next = 0;
    for (let op = 0; op < 200_000; op++) {
      const r = random();
      if (r < 0.5 || model.size === 0) {
        // Mostly consecutive ids (as a stream hands them out), sometimes anywhere.
        const key = random() < 0.9 ? base + next++ : Math.floor(random() * 2 ** 53);
        const slot = Math.floor(random() * 2 ** 31);
        index.set(key, slot);
        model.set(key, slot);
      } else {
        // Delete a held key (older ones more often) or a missing one.
        const keys = [...model.keys()];
        const key = random() < 0.95
          ? keys[Math.floor(random() * random() * keys.length)]
          : base + next + 1_000_000;
        assertEquals(index.delete(key), model.delete(key), `delete ${key} (seed ${seed})`);
      }
      if (op % 1000 === 0 || model.size < 40) {
        assertEquals(index.size, model.size);
        for (const [k, v] of model) assertEquals(index.get(k), v, `key ${k} (seed ${seed})`);
      }
      // Keep it near the in-flight set's size, so deletions meet long probe runs.
      while (model.size > 1500) {
        const first = model.keys().next().value!;
        index.delete(first);
        model.delete(first);
      }
    }
    for (const [k, v] of model) assertEquals(index.get(k), v);
  }
});
