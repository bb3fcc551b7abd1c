/**
 * Partitioned streams (README "Partitioned streams") with consumers in this process against a
 * real redis-server: three instances share 8 partitions evenly through the lease keys, one
 * that stops hands its partitions over and one that joins takes its share, with nothing lost
 * and each aggregate's entries forwarded in stream order; and a settle after the partition's
 * lease went to another owner writes nothing (fenced).
 *
 * @module
 */

import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { pendingEntries, readStream, wireEntry, xadd } from "../support/streams.ts";
import {
  GROUP,
  type RunningConsumer,
  startConsumer,
  testConfig,
} from "../support/in_process_consumer.ts";
import { ConnectionManager } from "../../src/redis/connection.ts";
import { waitFor } from "../support/wait.ts";
import { HandlerRegistry } from "../../src/stream/handlers.ts";
import { KeySchema, partitionKey, partitionKeys, partitionOf } from "../../src/stream/keys.ts";
import { encodeSettle, SETTLE_FENCED } from "../../src/stream/consumer/settle_codec.ts";
import type { RedisClient } from "../support/redis_server.ts";

const N = 8;
const KEYS = new KeySchema({ group: GROUP });
const ENV = {
  STREAM: "orders",
  STREAM_PARTITIONS: String(N),
  PARTITION_LEASE_MS: "2000",
  CLAIM_IDLE_MS: "1000",
  ROUTES: "*=>out",
};

/** The owner of each partition's lease (undefined when free). */
async function owners(client: RedisClient): Promise<(string | undefined)[]> {
  const out: (string | undefined)[] = [];
  for (const key of partitionKeys("orders", N)) {
    const v = await client.sendCommand(["GET", KEYS.lease(key)]);
    out.push(v === null ? undefined : String(v));
  }
  return out;
}

/** True when every partition is leased and only to `names`, their counts differing by ≤ 1. */
function evenOver(leases: (string | undefined)[], names: string[]): boolean {
  if (leases.some((o) => o === undefined || !names.includes(o))) return false;
  const counts = names.map((n) => leases.filter((o) => o === n).length);
  return Math.max(...counts) - Math.min(...counts) <= 1 && Math.min(...counts) >= 1;
}

/** Publishes `count` entries over `aggregates` aggregates, each with its sequence number. */
async function publish(
  client: RedisClient,
  seq: Map<string, number>,
  count: number,
  aggregates = 20,
): Promise<void> {
  for (let i = 0; i < count; i++) {
    const agg = `agg-${i % aggregates}`;
    const n = (seq.get(agg) ?? 0) + 1;
    seq.set(agg, n);
    await xadd(client, partitionKey("orders", partitionOf(agg, N)), wireEntry("t", agg, { n }));
  }
}

/** Checks the forwarded output: every entry once, each aggregate's in sequence order. */
async function checkOutput(client: RedisClient, seq: Map<string, number>): Promise<void> {
  const total = [...seq.values()].reduce((a, b) => a + b, 0);
  const out = await waitFor(async () => {
    const entries = await readStream(client, "out");
    return entries.length >= total ? entries : undefined;
  }, { timeoutMs: 30_000, message: `${total} forwarded entries` });
  assertEquals(out.length, total, "each entry forwarded once");
  const last = new Map<string, number>();
  for (const e of out) {
    const agg = e.fields.aggregateId;
    const n = JSON.parse(e.fields.payload).n as number;
    assertEquals(n, (last.get(agg) ?? 0) + 1, `order of ${agg}`);
    last.set(agg, n);
  }
  for (const [agg, n] of seq) assertEquals(last.get(agg), n, `all of ${agg}`);
}

Deno.test("three instances share 8 partitions evenly; a leave and a join rebalance; order kept", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const start = (name: string): Promise<RunningConsumer> =>
    startConsumer(cleanup, redis, { ...ENV, CONSUMER_NAME: name }, new HandlerRegistry());
  const seq = new Map<string, number>();
  await publish(client, seq, 200);
  const running = new Map<string, RunningConsumer>();
  for (const name of ["c1", "c2", "c3"]) running.set(name, await start(name));
  await waitFor(async () => evenOver(await owners(client), ["c1", "c2", "c3"]), {
    timeoutMs: 15_000,
    message: "8 partitions spread over c1, c2, c3",
  });
  await publish(client, seq, 200);

  // c2 stops (SIGTERM-like): it leaves and releases; the others take its partitions.
  assert(await running.get("c2")!.stop(), "c2 settled everything");
  await publish(client, seq, 200);
  await waitFor(async () => evenOver(await owners(client), ["c1", "c3"]), {
    timeoutMs: 15_000,
    message: "8 partitions spread over c1, c3",
  });

  // c4 joins: it gets its share.
  running.set("c4", await start("c4"));
  await publish(client, seq, 200);
  await waitFor(async () => evenOver(await owners(client), ["c1", "c3", "c4"]), {
    timeoutMs: 15_000,
    message: "8 partitions spread over c1, c3, c4",
  });
  await publish(client, seq, 200);
  await checkOutput(client, seq);
  const held = running.get("c4")!.consumer.partitionsHeld();
  assert(held.size >= 2, `c4 holds its share: ${[...held.keys()]}`);
});

Deno.test("a settle after the partition's lease went to another owner writes nothing", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const key = partitionKey("orders", 0);
  const connection = new ConnectionManager({ redis: testConfig(redis).redis, clientName: "t" });
  cleanup.add(() => connection.close());
  await connection.connect();
  await client.sendCommand(["XGROUP", "CREATE", key, GROUP, "0", "MKSTREAM"]);
  const id = await xadd(client, key, wireEntry("t", "a"));
  await client.sendCommand(["XREADGROUP", "GROUP", GROUP, "old", "STREAMS", key, ">"]);
  await client.sendCommand(["SET", KEYS.lease(key), "new", "PX", "60000"]);
  const settle = (consumer: string) => {
    const { keys, args } = encodeSettle({
      stream: key,
      checkpointKey: KEYS.checkpoint(key),
      group: GROUP,
      consumer,
      now: new Date().toISOString(),
      dedupTtlS: 60,
      leaseKey: KEYS.lease(key),
    }, [{ id }, { id: "1-1", copy: { kind: "forward", targets: ["out"], headers: "{}" } }]);
    return connection.exec((c) => SETTLE_FENCED.run(c, keys, args));
  };
  assertEquals(await settle("old"), "fenced");
  const pending = await pendingEntries(client, key, GROUP);
  assertEquals(pending.map((p) => [p.id, p.consumer]), [[id, "old"]], "still pending for old");
  assertEquals(await client.sendCommand(["EXISTS", "out", KEYS.checkpoint(key)]), 0);
  // The lease holder's settle goes through.
  await client.sendCommand(["XCLAIM", key, GROUP, "new", "0", id]);
  const reply = await settle("new") as unknown[];
  assertEquals(reply[0], 1, "acknowledged by the owner");
  assertEquals(await pendingEntries(client, key, GROUP), []);
});
