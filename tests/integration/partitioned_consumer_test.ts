/**
 * Partitioned streams (README "Partitioned streams") with consumers in this process against a
 * real redis-server: three instances share 8 partitions evenly through the lease keys, one
 * that stops hands its partitions over and one that joins takes its share, with nothing lost
 * and each aggregate's entries forwarded in stream order; and a settle after the partition's
 * lease went to another owner writes nothing (fenced), in the script and in a running consumer;
 * `StreamAdmin` reports the partitions and replays their dead letters.
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
import { StreamAdmin } from "../../src/stream/admin.ts";
import { gate, waitFor } from "../support/wait.ts";
import { assertInOrder, evenOver, leaseOwners } from "../support/partition_scenario.ts";
import { HandlerRegistry } from "../../src/stream/handlers.ts";
import { KeySchema, partitionKey, partitionKeys, partitionOf } from "../../src/stream/keys.ts";
import { encodeSettle } from "../../src/stream/consumer/settle_codec.ts";
import { SETTLE_FENCED } from "../../src/stream/consumer/settle_script.ts";
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
const owners = (client: RedisClient) => leaseOwners(client, partitionKeys("orders", N), GROUP);

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
  assertInOrder(out, seq);
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

Deno.test("a partition taken over: every pending entry in id order, its own older leftovers first", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const key = partitionKey("orders", partitionOf("agg-0", N)); // publish(…, 1): one aggregate
  await client.sendCommand(["XGROUP", "CREATE", key, GROUP, "0", "MKSTREAM"]);
  const seq = new Map<string, number>();
  await publish(client, seq, 2, 1);
  await publish(client, seq, 2, 1);
  // An earlier life of c1 read the first two and died; "gone" read the next two and died.
  // With the older entries c1's own, taking them after the others' would swap the order.
  await client.sendCommand(["XREADGROUP", "GROUP", GROUP, "c1", "COUNT", "2", "STREAMS", key, ">"]);
  await client.sendCommand([
    "XREADGROUP",
    "GROUP",
    GROUP,
    "gone",
    "COUNT",
    "2",
    "STREAMS",
    key,
    ">",
  ]);
  const pending = await pendingEntries(client, key, GROUP);
  assertEquals(pending.map((p) => p.consumer), ["c1", "c1", "gone", "gone"]);
  await startConsumer(cleanup, redis, { ...ENV, CONSUMER_NAME: "c1" }, new HandlerRegistry());
  await checkOutput(client, seq);
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

Deno.test("StreamAdmin reports each partition's owner, pending and lag, and replays every partition's dead letters", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const connection = new ConnectionManager({ redis: testConfig(redis).redis, clientName: "t" });
  cleanup.add(() => connection.close());
  await connection.connect();
  const admin = new StreamAdmin({
    connection,
    dlqFor: (s) => KEYS.dlq(s),
    partitions: N,
    leaseFor: (p) => KEYS.lease(p),
    group: GROUP,
  });
  const p0 = partitionKey("orders", 0);
  await client.sendCommand(["XGROUP", "CREATE", p0, GROUP, "0", "MKSTREAM"]);
  await xadd(client, p0, wireEntry("t", "a"));
  await xadd(client, p0, wireEntry("t", "a"));
  await client.sendCommand([
    "XREADGROUP",
    "GROUP",
    GROUP,
    "pod-a",
    "COUNT",
    "1",
    "STREAMS",
    p0,
    ">",
  ]);
  await client.sendCommand(["SET", KEYS.lease(p0), "pod-a", "PX", "60000"]);
  const before = Date.now();
  const report = await admin.partitions("orders");
  assertEquals(report.map((p) => p.key), partitionKeys("orders", N));
  assertEquals([report[0].owner, report[0].pending, report[0].lag], ["pod-a", 1, 1]);
  const expiry = Date.parse(report[0].leaseExpiresAt!);
  assert(expiry > before + 50_000 && expiry < before + 70_000, report[0].leaseExpiresAt!);
  assertEquals(report[1], {
    key: partitionKey("orders", 1),
    partition: 1,
    owner: null,
    leaseExpiresAt: null,
    pending: 0,
    lag: null,
  });

  // Dead letters of two partitions go back into their own partitions.
  for (const i of [1, 3]) {
    const key = partitionKey("orders", i);
    await xadd(client, KEYS.dlq(key), {
      ...wireEntry("t", `agg-${i}`),
      error: "boom",
      sourceStream: key,
      sourceId: "1-1",
      deliveries: "3",
      consumer: "pod-a",
      failedAt: new Date().toISOString(),
    });
  }
  const ids = await admin.replay("orders", 10);
  assertEquals(ids.length, 2);
  for (const i of [1, 3]) {
    const key = partitionKey("orders", i);
    const back = await readStream(client, key);
    assertEquals(back.map((e) => e.fields.aggregateId), [`agg-${i}`]);
    assertEquals(back[0].fields.sourceStream, undefined, "dead-letter fields removed");
    assertEquals(await readStream(client, KEYS.dlq(key)), []);
  }
  assertEquals(
    (await admin.report(partitionKey("orders", 3))).length,
    1,
    "/admin/streams reports partition keys",
  );
  assertEquals(admin.keysOf("orders"), partitionKeys("orders", N));
});

Deno.test("a consumer whose lease is taken while a handler runs writes nothing of that entry", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const started = gate();
  const finish = gate();
  const registry = new HandlerRegistry().fallback(async () => {
    started.open();
    await finish.promise;
  });
  const c1 = await startConsumer(cleanup, redis, {
    ...ENV,
    STREAM_PARTITIONS: "2",
    CONSUMER_NAME: "c1",
    CLAIM_IDLE_MS: "60000",
  }, registry);
  const key = partitionKey("orders", partitionOf("a", 2));
  await waitFor(async () => String(await client.sendCommand(["GET", KEYS.lease(key)])) === "c1", {
    message: "c1 holds the lease",
  });
  const id = await xadd(client, key, wireEntry("t", "a"));
  await started.promise;
  // Another owner takes the partition (as after a pause past the lease time).
  await client.sendCommand(["SET", KEYS.lease(key), "other", "PX", "60000"]);
  await waitFor(() => !c1.consumer.partitionsHeld().has(key), {
    message: "c1 sees the lease lost",
  });
  finish.open();
  await waitFor(() => c1.consumer.inFlight === 0, { message: "the entry settled (fenced)" });
  const pending = await pendingEntries(client, key, GROUP);
  assertEquals(pending.map((p) => [p.id, p.consumer]), [[id, "c1"]], "left pending");
  assertEquals(await client.sendCommand(["EXISTS", "out"]), 0, "not forwarded");
  assertEquals(await client.sendCommand(["EXISTS", KEYS.checkpoint(key)]), 0, "no checkpoint");
});
