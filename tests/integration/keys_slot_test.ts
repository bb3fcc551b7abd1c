/**
 * `slotOf` (src/stream/keys.ts) against the real thing: `CLUSTER KEYSLOT` of a cluster-enabled
 * `redis-server` for a few thousand keys (tags, empty tags, nested braces, UTF-8, partition keys
 * and every key the key schema derives from them).
 *
 * @module
 */

import { KeySchema, partitionKeys, slotOf } from "../../src/stream/keys.ts";
import { assertEquals } from "../support/assert.ts";
import { startRedis } from "../support/redis_server.ts";
import { freePort } from "../support/wait.ts";

function sampleKeys(): string[] {
  const keys = new KeySchema({ group: "billing" });
  const out = [
    "",
    "somekey",
    "foo{hash_tag}",
    "{}",
    "{}x",
    "x{}",
    "foo{}{bar}",
    "foo{{bar}}zap",
    "a{b}c{d}",
    "open{only",
    "close}only{",
    "ü",
    "日本{語}",
    "{日本}.x",
    "emoji-😀",
  ];
  for (const p of partitionKeys("orders", 64)) {
    out.push(p, keys.lease(p), keys.dlq(p), keys.checkpoint(p), keys.outbox(p));
  }
  out.push(keys.members("orders"), keys.relayMark("audit", "{orders:1}", "1-0", 0));
  // Pseudo-random keys from a fixed seed, over a small alphabet heavy in braces.
  const alphabet = "ab{}:-xé";
  let seed = 42;
  for (let i = 0; i < 3000; i++) {
    let key = "";
    const length = i % 17;
    for (let j = 0; j < length; j++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      key += alphabet[seed % alphabet.length];
    }
    out.push(key);
  }
  return out;
}

Deno.test("slotOf() agrees with CLUSTER KEYSLOT on a real cluster-enabled redis-server", async () => {
  await using redis = await startRedis({
    args: [
      "--cluster-enabled",
      "yes",
      "--cluster-config-file",
      "nodes.conf",
      "--cluster-port",
      String(freePort()),
    ],
  });
  const client = await redis.client();
  const keys = sampleKeys();
  const slots = await Promise.all(
    keys.map((key) => client.sendCommand(["CLUSTER", "KEYSLOT", key])),
  );
  const mismatches = keys
    .map((key, i) => ({ key, redis: Number(slots[i]), ours: slotOf(key) }))
    .filter((m) => m.redis !== m.ours);
  assertEquals(mismatches, []);
});
