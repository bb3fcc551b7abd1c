/**
 * Integration tests of the consumer's failure paths against a real redis-server, the consumer
 * running in this process: malformed entries go to the dead-letter stream at once, failing
 * handlers are retried and dead-lettered after MAX_DELIVERIES, ROUTES forwards exactly once
 * (also when the SETTLE script runs twice for one entry), idle entries of a dead consumer are
 * claimed while a running handler's entry is kept alive, deleted pending entries are cleaned
 * up, and idle consumers without pending entries are removed.
 *
 * @module
 */

import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { gate, waitFor } from "../support/wait.ts";
import {
  commandStat,
  consumers,
  createGroup,
  pendingCount,
  pendingEntries,
  readAsGhost,
  readStream,
  wireEntry,
  xadd,
  xlen,
} from "../support/streams.ts";
import { GROUP, recordingRegistry, startConsumer } from "../support/in_process_consumer.ts";
import { HandlerRegistry } from "../../src/stream/handlers.ts";
import { registerDiagnosticHandlers } from "../../src/stream/diagnostic_handlers.ts";
import { DELETE_IDLE_CONSUMER } from "../../src/stream/scripts.ts";
import { encodeSettle } from "../../src/stream/consumer/settle_codec.ts";
import { SETTLE } from "../../src/stream/consumer/settle_script.ts";

Deno.test("StreamConsumer dead-letters malformed entries at once and keeps consuming", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const good = wireEntry("test.ok", "a");
  const malformed: Record<string, string>[] = [
    { aggregateId: "a", payload: "{}", headers: good.headers }, // no event
    { ...wireEntry("test.bad", "a"), payload: "not json{" },
    { ...wireEntry("test.big", "a"), payload: JSON.stringify({ big: "x".repeat(1_100_000) }) },
  ];
  const ids: string[] = [];
  for (const fields of malformed) ids.push(await xadd(client, "s", fields));
  const { registry, handled } = recordingRegistry();
  await startConsumer(cleanup, redis, {}, registry);
  const dlq = await waitFor(async () => {
    const entries = await readStream(client, "s:dlq");
    return entries.length === 3 ? entries : undefined;
  }, { message: "3 dead letters" });
  const later = await xadd(client, "s", good);
  await waitFor(() => handled.includes(later), { message: "a later good entry handled" });
  assertEquals(handled, [later]);
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });

  const bySource = new Map(dlq.map((e) => [e.fields.sourceId, e.fields]));
  malformed.forEach((original, i) => {
    const f = bySource.get(ids[i]);
    assert(f, `dead letter of ${ids[i]}`);
    for (const [k, v] of Object.entries(original)) assertEquals(f[k], v, `field ${k}`);
    assertEquals(f.sourceStream, "s");
    assertEquals(f.deliveries, "1");
    assertEquals(f.consumer, "c1");
    assert(!Number.isNaN(Date.parse(f.failedAt)), `failedAt ${f.failedAt}`);
    assertStringIncludes(f.error, "malformed");
  });
  assertStringIncludes(bySource.get(ids[0])!.error, "event");
  assertStringIncludes(bySource.get(ids[1])!.error, "payload");
  assertStringIncludes(bySource.get(ids[2])!.error, "1 MB");
});

Deno.test("StreamConsumer retries a failing handler and dead-letters it after MAX_DELIVERIES", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const diagnostics = new HandlerRegistry();
  registerDiagnosticHandlers(diagnostics);
  const runs = new Map<string, { deliveries: number; ok: boolean }[]>();
  const registry = new HandlerRegistry().fallback(async (e, ctx) => {
    const list = runs.get(e.id) ?? [];
    runs.set(e.id, list);
    try {
      await diagnostics.resolve(e.event).handle(e, ctx);
      list.push({ deliveries: ctx.deliveries, ok: true });
    } catch (err) {
      list.push({ deliveries: ctx.deliveries, ok: false });
      throw err;
    }
  });
  const twice = await xadd(client, "s", wireEntry("diagnostic.fail", "a", { failTimes: 2 }));
  const always = await xadd(client, "s", wireEntry("diagnostic.fail", "b", {}));
  await startConsumer(cleanup, redis, { MAX_DELIVERIES: "3", CLAIM_IDLE_MS: "300" }, registry);

  const dead = await waitFor(async () => {
    const entries = await readStream(client, "s:dlq");
    return entries.length > 0 ? entries : undefined;
  }, { message: "a dead letter" });
  const after = await xadd(client, "s", wireEntry("test.after", "b"));
  await waitFor(() => runs.get(after)?.[0]?.ok, { message: "a later entry handled" });
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });

  assertEquals(runs.get(twice), [
    { deliveries: 1, ok: false },
    { deliveries: 2, ok: false },
    { deliveries: 3, ok: true },
  ]);
  assertEquals(runs.get(always), [
    { deliveries: 1, ok: false },
    { deliveries: 2, ok: false },
    { deliveries: 3, ok: false },
  ]);
  const all = await readStream(client, "s:dlq");
  assertEquals(all.length, 1, "only the always failing entry is dead-lettered");
  assertEquals(dead[0].fields.sourceId, always);
  assertEquals(dead[0].fields.deliveries, "3");
  assertEquals(dead[0].fields.event, "diagnostic.fail");
  assertStringIncludes(dead[0].fields.error, "diagnostic.fail");
  // The retried entry settled after a later one: the checkpoint does not move back.
  assertEquals(await client.hGet(`s:checkpoint:${GROUP}`, "c1"), after);
});

Deno.test("StreamConsumer forwards entries to every ROUTES target once", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const sources = new Map<string, Record<string, string>>();
  for (let i = 0; i < 10; i++) {
    const fields = {
      ...wireEntry(i % 2 ? "order.created" : "user.updated", `a${i}`, { i }),
      x: `${i}`,
    };
    sources.set(await xadd(client, "s", fields), fields);
  }
  const { connection } = await startConsumer(cleanup, redis, {
    ROUTES: "order.*=>orders,*=>audit",
  });
  await waitFor(async () => await xlen(client, "audit") === 10, { message: "10 in audit" });
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
  const audit = await readStream(client, "audit");
  const orders = await readStream(client, "orders");
  assertEquals(orders.length, 5);
  for (const target of [audit, orders]) {
    for (const { fields } of target) {
      const headers = JSON.parse(fields.headers) as Record<string, string>;
      const original = sources.get(headers.sourceId);
      assert(original, `source of ${fields.headers}`);
      assertEquals(headers.sourceStream, "s");
      const originalHeaders = JSON.parse(original.headers) as Record<string, string>;
      assertEquals(headers.correlationId, originalHeaders.correlationId);
      assertEquals({ ...fields, headers: "" }, { ...original, headers: "" });
    }
  }
  assertEquals(new Set(audit.map((e) => JSON.parse(e.fields.headers).sourceId)).size, 10);
  assert(orders.every((e) => e.fields.event === "order.created"));

  // SETTLE run twice for one entry (a second consumer settling it after a claim):
  // only the run whose XACK takes effect forwards it and marks it.
  const id = await xadd(client, "t", wireEntry("order.created", "z"));
  await createGroup(client, "t", "g2");
  await readAsGhost(client, "t", "g2", "manual", 1);
  const { keys, args } = encodeSettle({
    stream: "t",
    checkpointKey: "t:checkpoint:g2",
    group: "g2",
    consumer: "manual",
    now: new Date().toISOString(),
    dedupTtlS: 60,
  }, [{
    id,
    dedupKey: "t:dedup:g2:k",
    copy: { kind: "forward", targets: ["routed"], headers: "{}" },
  }]);
  const first = await connection.exec((c) => SETTLE.run(c, keys, args));
  const second = await connection.exec((c) => SETTLE.run(c, keys, args));
  assertEquals(first, [1, 1], "settled, checkpoint written");
  assertEquals(second, [0, 1], "not pending any more: nothing written");
  const routed = await readStream(client, "routed");
  assertEquals(routed.length, 1);
  assertEquals(routed[0].fields.headers, "{}");
  assertEquals(await client.get("t:dedup:g2:k"), id);
  assertEquals(await client.hGet("t:checkpoint:g2", "manual"), id);
  assertEquals(await pendingCount(client, "t", "g2"), 0);
});

Deno.test("ROUTES copies carry the entry's headers plus sourceStream and sourceId, however the entry wrote them", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  // As JSON.stringify writes them (the script extends the field itself), and otherwise (the
  // process makes the new headers): spaces, an escape, keys in an order JSON.parse changes,
  // a source already named, no headers at all.
  const raws = [
    '{"correlationId":"c-1"}',
    "{}",
    '{ "correlationId": "c-2" }',
    '{"note":"zo\\u00eb"}',
    '{"2":"two","1":"one"}',
    '{"sourceId":"older","k":"v"}',
    undefined,
  ];
  const ids: string[] = [];
  for (const raw of raws) {
    const { headers: _, ...rest } = wireEntry("order.created", "a");
    ids.push(await xadd(client, "s", raw === undefined ? rest : { ...rest, headers: raw }));
  }
  await startConsumer(cleanup, redis, { ROUTES: "*=>out" });
  await waitFor(async () => await xlen(client, "out") === raws.length, { message: "all copied" });
  const out = await readStream(client, "out");
  raws.forEach((raw, i) => {
    const own = raw === undefined ? {} : JSON.parse(raw) as Record<string, string>;
    const expected = JSON.stringify({ ...own, sourceStream: "s", sourceId: ids[i] });
    assertEquals(out[i].fields.headers, expected, raw);
  });
});

Deno.test("StreamConsumer forwards an entry handled by two consumers after a claim once", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const g = gate();
  const runs: string[] = [];
  // c1 stalls in its handler and, with a very long CLAIM_IDLE_MS, keeps nothing alive in time:
  // c2 (CLAIM_IDLE_MS 300) claims the entry and handles it too.
  const stalled = new HandlerRegistry().fallback(async () => {
    runs.push("c1");
    await g.promise;
  });
  const c1 = await startConsumer(cleanup, redis, {
    ROUTES: "*=>out",
    CLAIM_IDLE_MS: "600000",
  }, stalled);
  const id = await xadd(client, "s", wireEntry("test.twice", "a"));
  await waitFor(() => runs.length === 1, { message: "c1 runs the handler" });
  const free = new HandlerRegistry().fallback((_e, ctx) => {
    runs.push(`c2:${ctx.deliveries}`);
  });
  await startConsumer(cleanup, redis, {
    ROUTES: "*=>out",
    CLAIM_IDLE_MS: "300",
    CONSUMER_NAME: "c2",
  }, free);
  await waitFor(async () => await xlen(client, "out") === 1, { message: "c2 forwards it" });
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
  g.open();
  await waitFor(() => c1.consumer.inFlight === 0, { message: "c1 settled its run" });
  assertEquals(runs, ["c1", "c2:2"]);
  const out = await readStream(client, "out");
  assertEquals(out.length, 1, "forwarded once");
  assertEquals(JSON.parse(out[0].fields.headers).sourceId, id);
  assertEquals(await client.hGet(`s:checkpoint:${GROUP}`, "c2"), id);
  assertEquals(await client.hGet(`s:checkpoint:${GROUP}`, "c1"), null, "c1's XACK took no effect");
});

Deno.test("StreamConsumer claims the idle entries of a dead consumer", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  for (let i = 0; i < 10; i++) await xadd(client, "s", wireEntry("test.ghosted", `a${i}`));
  const held = await readAsGhost(client, "s", GROUP, "ghost", 10);
  assertEquals(held.length, 10);
  const deliveries = new Map<string, number>();
  const registry = new HandlerRegistry().fallback((e, ctx) => {
    deliveries.set(e.id, ctx.deliveries);
  });
  await startConsumer(cleanup, redis, { CLAIM_IDLE_MS: "300" }, registry);
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "the ghost's entries acknowledged",
    timeoutMs: 10_000,
  });
  assertEquals([...deliveries.keys()].sort(), [...held].sort());
  for (const id of held) assertEquals(deliveries.get(id), 2, `deliveries of ${id}`);
});

Deno.test("StreamConsumer does not claim an entry whose handler still runs elsewhere", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const g = gate();
  const invocations: { consumer: string; deliveries: number }[] = [];
  const registry = (consumer: string) =>
    new HandlerRegistry().fallback(async (_e, ctx) => {
      invocations.push({ consumer, deliveries: ctx.deliveries });
      await g.promise;
    });
  await startConsumer(cleanup, redis, { CLAIM_IDLE_MS: "300" }, registry("c1"));
  const id = await xadd(client, "s", wireEntry("test.gated", "a"));
  await waitFor(() => invocations.length === 1, { message: "c1 runs the handler" });
  await startConsumer(
    cleanup,
    redis,
    { CLAIM_IDLE_MS: "300", CONSUMER_NAME: "c2" },
    registry("c2"),
  );
  // Both consumers run their claim loop every 150 ms; let many rounds pass, well beyond
  // CLAIM_IDLE_MS, while the handler is blocked.
  const stats = await redis.client();
  // Every claim round runs XPENDING twice (others' idle entries, own ones not held).
  const xpendingCalls = () => commandStat(stats, "xpending");
  const before = await xpendingCalls();
  await waitFor(async () => await xpendingCalls() >= before + 32, {
    message: "16 claim rounds",
  });
  const [pending] = await pendingEntries(client, "s", GROUP);
  assertEquals({ id: pending.id, consumer: pending.consumer, deliveries: pending.deliveries }, {
    id,
    consumer: "c1",
    deliveries: 1,
  });
  g.open();
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
  assertEquals(invocations, [{ consumer: "c1", deliveries: 1 }]);
});

Deno.test("StreamConsumer cleans up pending entries that were deleted from the stream", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  // Held by a dead "ghost" (claim path) and by this consumer's previous life (own pending path).
  for (let i = 0; i < 6; i++) await xadd(client, "s", wireEntry("test.gone", `a${i}`));
  const ghosted = await readAsGhost(client, "s", GROUP, "ghost", 3);
  const own = await readAsGhost(client, "s", GROUP, "c1", 3);
  assertEquals(await client.sendCommand(["XDEL", "s", ...ghosted, ...own]), 6);
  assertEquals(await pendingCount(client, "s", GROUP), 6);
  const { registry, handled } = recordingRegistry();
  const { consumer } = await startConsumer(cleanup, redis, { CLAIM_IDLE_MS: "300" }, registry);
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
  const later = await xadd(client, "s", wireEntry("test.after", "b"));
  await waitFor(() => handled.includes(later), { message: "a later entry handled" });
  assertEquals(handled, [later]);
  assertEquals(await xlen(client, "s:dlq"), 0);
  assert(consumer.status().active, "consumer still active");
});

Deno.test("StreamConsumer removes idle consumers that hold nothing", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  await client.sendCommand(["XGROUP", "CREATECONSUMER", "s", GROUP, "ghost"]);
  // CLAIM_IDLE_MS 100: consumers idle over 1 s are removed, checked every second.
  const { connection } = await startConsumer(cleanup, redis, { CLAIM_IDLE_MS: "100" });
  await waitFor(
    async () => !(await consumers(client, "s", GROUP)).some((c) => c.name === "ghost"),
    {
      message: "ghost removed",
    },
  );
  assertEquals((await consumers(client, "s", GROUP)).map((c) => c.name), ["c1"]);

  // The script behind it never removes a consumer with pending entries (another group, which
  // the running consumer does not claim from).
  await createGroup(client, "s", "other");
  await xadd(client, "s", wireEntry("test.held", "a"));
  await readAsGhost(client, "s", "other", "holder", 1);
  await client.sendCommand(["XGROUP", "CREATECONSUMER", "s", "other", "empty"]);
  const holder = await connection.exec((c) =>
    DELETE_IDLE_CONSUMER.run(c, ["s"], ["other", "holder"])
  );
  const empty = await connection.exec((c) =>
    DELETE_IDLE_CONSUMER.run(c, ["s"], ["other", "empty"])
  );
  assertEquals([holder, empty], [0, 1]);
  const left = (await consumers(client, "s", "other")).map((c) => [c.name, c.pending]);
  assertEquals(left, [["holder", 1]]);
  assertEquals(await pendingCount(client, "s", "other"), 1);
});
