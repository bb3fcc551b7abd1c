/**
 * Integration tests of `StreamConsumer` against a real redis-server, the consumer running in
 * this process: consuming and acknowledging with the checkpoint, recovery of a restarted
 * consumer's own pending entries, per-aggregate ordering under concurrency, backpressure
 * (MAX_IN_FLIGHT), idempotency keys, and consuming several streams at once.
 *
 * @module
 */

import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { gate, sleep, waitFor } from "../support/wait.ts";
import {
  commandStat,
  createGroup,
  pendingCount,
  pendingEntries,
  readAsGhost,
  readStream,
  wireEntry,
  xadd,
  xlen,
} from "../support/streams.ts";
import { GROUP, startConsumer } from "../support/in_process_consumer.ts";
import { HandlerRegistry } from "../../src/stream/handlers.ts";
import type { StreamEvent } from "../../src/stream/entry.ts";

Deno.test("StreamConsumer acknowledges handled entries and writes the checkpoint", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const seen: StreamEvent[] = [];
  const registry = new HandlerRegistry().on("test.*", (e) => {
    seen.push(e);
  });
  const { consumer } = await startConsumer(cleanup, redis, {}, registry);
  const ids: string[] = [];
  for (let i = 0; i < 25; i++) {
    ids.push(
      await xadd(client, "s", { ...wireEntry("test.created", `a${i % 5}`, { i }), extra: "x" }),
    );
  }
  await waitFor(() => seen.length >= 25, { message: "25 entries handled" });
  assertEquals(seen.map((e) => e.id).sort(), [...ids].sort());
  const first = seen.find((e) => e.id === ids[0])!;
  assertEquals(first.event, "test.created");
  assertEquals(first.aggregateId, "a0");
  assertEquals(first.payload, { i: 0 });
  assertEquals(first.stream, "s");
  assertEquals(first.fields.extra, "x");
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
  const checkpoint = await waitFor(async () => {
    const h = await client.hGetAll(`s:checkpoint:${GROUP}`);
    return h.c1 === ids[ids.length - 1] ? h : undefined;
  }, { message: "checkpoint at the last id" });
  assert(!Number.isNaN(Date.parse(checkpoint["c1:at"])), `c1:at ${checkpoint["c1:at"]}`);
  assertEquals(seen.length, 25, "each entry handled once");
  await waitFor(() => consumer.status().streams[0].pending === 0 && consumer.status().active);
  assertEquals(consumer.inFlight, 0);
});

Deno.test("StreamConsumer handles its own pending entries first when it restarts", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const held: string[] = [];
  for (let i = 0; i < 5; i++) held.push(await xadd(client, "s", wireEntry("test.held", `h${i}`)));
  // The previous life of consumer c1 read them and died without acknowledging.
  assertEquals(await readAsGhost(client, "s", GROUP, "c1", 5), held);
  // One more, read again and again: past MAX_DELIVERIES (5) it is dead-lettered unhandled.
  const worn = await xadd(client, "s", wireEntry("test.worn", "w"));
  assertEquals(await readAsGhost(client, "s", GROUP, "c1", 1), [worn]);
  for (let i = 0; i < 5; i++) {
    await client.sendCommand(["XREADGROUP", "GROUP", GROUP, "c1", "STREAMS", "s", held[4]]);
  }
  const later = await xadd(client, "s", wireEntry("test.later", "l"));

  const deliveries = new Map<string, number>();
  const order: string[] = [];
  const registry = new HandlerRegistry().fallback((e, ctx) => {
    deliveries.set(e.id, ctx.deliveries);
    order.push(e.id);
  });
  // CLAIM_IDLE_MS is long: only the recovery of its own pending entries can hand them over.
  await startConsumer(cleanup, redis, { CLAIM_IDLE_MS: "600000" }, registry);
  await waitFor(() => deliveries.size === 6, { message: "6 entries handled" });
  for (const id of held) assert(deliveries.get(id)! >= 2, `deliveries of ${id}`);
  assertEquals(deliveries.get(later), 1);
  assertEquals(order.slice(0, 5).sort(), [...held].sort(), "pending ones first");
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
  assert(!deliveries.has(worn), "an entry past MAX_DELIVERIES ran its handler");
  const [dead] = await readStream(client, "s:dlq");
  assertEquals(dead.fields.sourceId, worn);
  assertEquals(dead.fields.deliveries, "7");
});

Deno.test("StreamConsumer keeps stream order per aggregate and runs aggregates concurrently", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const AGGREGATES = 20;
  const PER = 50;
  const expected = new Map<string, string[]>();
  const adds: Promise<string>[] = [];
  const aggs: string[] = [];
  for (let n = 0; n < PER; n++) {
    for (let a = 0; a < AGGREGATES; a++) {
      // Some entries carry an idempotency key: they must keep their place too.
      const headers: Record<string, string> = n % 7 === 3 ? { idempotencyKey: `k-${a}-${n}` } : {};
      adds.push(xadd(client, "s", wireEntry("test.order", `agg-${a}`, { n }, headers)));
      aggs.push(`agg-${a}`);
    }
  }
  const ids = await Promise.all(adds); // pipelined: stream order is the order sent
  ids.forEach((id, i) => {
    const list = expected.get(aggs[i]) ?? [];
    list.push(id);
    expected.set(aggs[i], list);
  });

  const seen = new Map<string, string[]>();
  let running = 0;
  let maxRunning = 0;
  let overlapSameAggregate = false;
  const active = new Set<string>();
  const registry = new HandlerRegistry().on("test.order", async (e) => {
    if (active.has(e.aggregateId)) overlapSameAggregate = true;
    active.add(e.aggregateId);
    running++;
    maxRunning = Math.max(maxRunning, running);
    await sleep(Math.floor(Math.random() * 3));
    const list = seen.get(e.aggregateId) ?? [];
    list.push(e.id);
    seen.set(e.aggregateId, list);
    running--;
    active.delete(e.aggregateId);
  });
  await startConsumer(cleanup, redis, { HANDLER_CONCURRENCY: "16", BATCH_SIZE: "100" }, registry);
  await waitFor(
    () => [...seen.values()].reduce((n, l) => n + l.length, 0) >= AGGREGATES * PER,
    { message: "all entries handled", timeoutMs: 20_000 },
  );
  for (const [agg, list] of expected) assertEquals(seen.get(agg), list, `order of ${agg}`);
  assert(!overlapSameAggregate, "two entries of one aggregate ran at once");
  assert(maxRunning > 1, `max concurrency ${maxRunning}`);
  assert(maxRunning <= 16, `max concurrency ${maxRunning} over HANDLER_CONCURRENCY`);
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
});

Deno.test("StreamConsumer holds at most MAX_IN_FLIGHT entries while handlers are blocked", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  for (let i = 0; i < 60; i++) await xadd(client, "s", wireEntry("test.slow", `a${i}`));
  const g = gate();
  let maxSeen = 0;
  let handled = 0;
  let started = 0;
  const registry = new HandlerRegistry();
  const running = await startConsumer(
    cleanup,
    redis,
    { MAX_IN_FLIGHT: "10", HANDLER_CONCURRENCY: "16", CLAIM_IDLE_MS: "300" },
    registry,
  );
  const { consumer } = running;
  registry.on("test.slow", async () => {
    started++;
    maxSeen = Math.max(maxSeen, consumer.inFlight, consumer.status().inFlight);
    await g.promise;
    handled++;
  });
  await waitFor(() => started === 10, { message: "10 handlers started" });
  // Several keep-alive rounds (XCLAIM of the held entries) pass while the gate is shut
  // (CLAIM_IDLE_MS 300: the claim loop skips its rounds while the consumer is full).
  const stats = await redis.client();
  const xclaimCalls = () => commandStat(stats, "xclaim");
  const before = await xclaimCalls();
  await waitFor(async () => await xclaimCalls() >= before + 30, {
    message: "3 keep-alive rounds",
  });
  assertEquals(started, 10, "no handler beyond MAX_IN_FLIGHT started");
  assertEquals(consumer.inFlight, 10);
  assert(
    (await pendingCount(client, "s", GROUP)) <= 10,
    "Redis holds at most 10 delivered entries",
  );
  g.open();
  await waitFor(() => handled === 60, { message: "all 60 handled" });
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
  assert(maxSeen <= 10, `inFlight reached ${maxSeen}`);
  assertEquals(consumer.inFlight, 0);
});

Deno.test("StreamConsumer reads on once a large settle is done (its wait on the settle backlog is woken)", async () => {
  // MAX_IN_FLIGHT entries wait on shut handlers; once they all finish, one settle call carries
  // them (a backlog of 20, over the reader's 2 x BATCH_SIZE). Their releases wake the waiting
  // reader before that backlog is counted down; the settle's end must wake it again.
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  for (let i = 0; i < 40; i++) await xadd(client, "s", wireEntry("test.slow", `a${i}`));
  const g = gate();
  let started = 0;
  let handled = 0;
  const registry = new HandlerRegistry().on("test.slow", async () => {
    started++;
    await g.promise;
    handled++;
  });
  await startConsumer(
    cleanup,
    redis,
    { MAX_IN_FLIGHT: "20", HANDLER_CONCURRENCY: "32", BATCH_SIZE: "2" },
    registry,
  );
  await waitFor(() => started === 20, { message: "20 handlers started" });
  g.open();
  await waitFor(() => handled === 40, { message: "all 40 handled" });
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
});

Deno.test("StreamConsumer runs the handler once for entries sharing an idempotency key", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  // Same aggregate (a producer's retried publish) and different aggregates, in one batch each.
  const sameAgg = [
    await xadd(client, "s", wireEntry("test.idem", "order-1", { v: 1 }, { idempotencyKey: "k1" })),
    await xadd(client, "s", wireEntry("test.idem", "order-1", { v: 2 }, { idempotencyKey: "k1" })),
  ];
  const otherAgg = [
    await xadd(client, "s", wireEntry("test.idem", "x-1", { v: 3 }, { idempotencyKey: "k2" })),
    await xadd(client, "s", wireEntry("test.idem", "x-2", { v: 4 }, { idempotencyKey: "k2" })),
  ];
  const calls: string[] = [];
  const registry = new HandlerRegistry().on("test.idem", async (e) => {
    calls.push(e.id);
    await sleep(5);
  });
  await startConsumer(cleanup, redis, { DEDUP_TTL_S: "600" }, registry);
  await waitFor(async () =>
    await pendingCount(client, "s", GROUP) === 0 &&
    await client.hGet(`s:checkpoint:${GROUP}`, "c1") === otherAgg[1], {
    message: "all four acknowledged",
  });
  // A third entry with key k1, read in a later batch, is a duplicate through the Redis mark.
  const late = await xadd(
    client,
    "s",
    wireEntry("test.idem", "order-1", { v: 5 }, {
      idempotencyKey: "k1",
    }),
  );
  await waitFor(async () => await client.hGet(`s:checkpoint:${GROUP}`, "c1") === late, {
    message: "checkpoint at the late duplicate",
  });
  // Acknowledged (the checkpoint moves in the same script as the XACK), not dead-lettered.
  assertEquals(await pendingEntries(client, "s", GROUP), [], "nothing left pending");
  assertEquals(await xlen(client, "s:dlq"), 0, "a duplicate is not dead-lettered");
  assertEquals(calls.filter((id) => sameAgg.includes(id) || id === late), [sameAgg[0]]);
  assertEquals(calls.filter((id) => otherAgg.includes(id)).length, 1);
  assertEquals(calls.length, 2);
  for (const key of ["k1", "k2"]) {
    const ttl = Number(await client.ttl(`s:dedup:${GROUP}:${key}`));
    assert(ttl > 590 && ttl <= 600, `TTL of ${key}: ${ttl}`);
  }
  assertEquals(await client.get(`s:dedup:${GROUP}:k1`), sameAgg[0]);
});

Deno.test("StreamConsumer consumes several streams with a checkpoint each", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const seen: string[] = [];
  const registry = new HandlerRegistry().fallback((e) => {
    seen.push(`${e.stream}/${e.id}`);
  });
  const { consumer } = await startConsumer(cleanup, redis, { STREAM: "a,b" }, registry);
  const last: Record<string, string> = {};
  for (let i = 0; i < 10; i++) {
    last.a = await xadd(client, "a", wireEntry("test.multi", `x${i}`));
    last.b = await xadd(client, "b", wireEntry("test.multi", `x${i}`));
  }
  await waitFor(() => seen.length === 20, { message: "20 entries handled" });
  assertEquals(seen.filter((s) => s.startsWith("a/")).length, 10);
  assertEquals(seen.filter((s) => s.startsWith("b/")).length, 10);
  for (const stream of ["a", "b"]) {
    await waitFor(
      async () => await client.hGet(`${stream}:checkpoint:${GROUP}`, "c1") === last[stream],
      { message: `checkpoint of ${stream}` },
    );
    assertEquals(await pendingCount(client, stream, GROUP), 0);
  }
  const stats = await waitFor(() => {
    const s = consumer.status().streams;
    return s.every((x) => x.length === 10 && x.pending === 0) ? s : undefined;
  }, { message: "stats of both streams" });
  assertEquals(stats.map((s) => s.stream), ["a", "b"]);
  assertEquals(stats.map((s) => s.dlqStream), ["a:dlq", "b:dlq"]);
});

Deno.test("StreamConsumer skips a repeated idempotency key read before the first one settled", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  // One batch: the key's first entry, fillers, the key again. With one handler at a time the
  // repeat runs long after the first entry settled, though both were read together.
  const first = await xadd(client, "s", wireEntry("test.idem", "a", {}, { idempotencyKey: "k" }));
  for (let i = 0; i < 10; i++) await xadd(client, "s", wireEntry("test.filler", `f${i}`));
  const repeat = await xadd(client, "s", wireEntry("test.idem", "b", {}, { idempotencyKey: "k" }));
  const calls: string[] = [];
  const registry = new HandlerRegistry().fallback(async (e) => {
    calls.push(e.id);
    await sleep(10);
  });
  await startConsumer(cleanup, redis, { HANDLER_CONCURRENCY: "1" }, registry);
  await waitFor(async () =>
    await pendingCount(client, "s", GROUP) === 0 &&
    await client.hGet(`s:checkpoint:${GROUP}`, "c1") === repeat, {
    message: "all acknowledged",
  });
  assertEquals(calls.length, 11);
  assert(calls.includes(first));
  assert(!calls.includes(repeat), "the repeated key ran its handler again");
});
