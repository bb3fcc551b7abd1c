/**
 * Typed handlers against a real redis-server, the consumer in this process (README, "Writing
 * handlers"): entries emitted with `ctx.publish` are written with the acknowledgement, exactly
 * once, and never for a failed delivery; a payload failing its schema is dead-lettered at once;
 * a handler past its `timeoutMs` fails (retried, then dead-lettered saying it timed out); a
 * handler's `concurrency` bounds its runs.
 */
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import {
  createGroup,
  pendingCount,
  readStream,
  wireEntry,
  xadd,
  xlen,
} from "../support/streams.ts";
import { gate, waitFor } from "../support/wait.ts";
import { GROUP, startConsumer } from "../support/in_process_consumer.ts";
import { HandlerRegistry } from "../../src/stream/handlers.ts";
import { registerDiagnosticHandlers } from "../../src/stream/diagnostic_handlers.ts";
import { defineHandler } from "../../src/stream/handler_api.ts";
import { z } from "zod";

function diagnostics(): HandlerRegistry {
  const registry = new HandlerRegistry();
  registerDiagnosticHandlers(registry);
  return registry;
}

Deno.test("ctx.publish entries are written with the acknowledgement, once, with causation and correlation", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const source = wireEntry("diagnostic.emit", "agg-7", { count: 3, stream: "emitted" }, {
    correlationId: "corr-7",
  });
  const id = await xadd(client, "s", source);
  await startConsumer(cleanup, redis, { DIAGNOSTIC_EVENTS: "true" }, diagnostics());
  await waitFor(async () => await xlen(client, "emitted") === 3, { message: "3 emitted" });
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "acknowledged",
  });
  const emitted = await readStream(client, "emitted");
  assertEquals(emitted.map((e) => JSON.parse(e.fields.payload)), [
    { i: 0, of: 3 },
    { i: 1, of: 3 },
    { i: 2, of: 3 },
  ]);
  for (const e of emitted) {
    assertEquals(e.fields.event, "diagnostic.emitted");
    assertEquals(e.fields.aggregateId, "agg-7", "the source's aggregateId by default");
    assertEquals(e.fields.serviceName, "itest");
    assertEquals(JSON.parse(e.fields.headers), { causationId: id, correlationId: "corr-7" });
    assert(!Number.isNaN(Date.parse(e.fields.timestamp)), e.fields.timestamp);
  }
});

Deno.test("a delivery that fails after publishing emits nothing; the successful one emits once", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  await xadd(
    client,
    "s",
    wireEntry("diagnostic.emit", "a", { count: 2, stream: "emitted", failTimes: 2 }),
  );
  await startConsumer(cleanup, redis, { DIAGNOSTIC_EVENTS: "true" }, diagnostics());
  await waitFor(
    async () => await pendingCount(client, "s", GROUP) === 0 && await xlen(client, "emitted") > 0,
    {
      message: "handled on its third delivery",
    },
  );
  const emitted = await readStream(client, "emitted");
  assertEquals(
    emitted.map((e) => JSON.parse(e.fields.payload).i),
    [0, 1],
    "only the 3rd delivery's",
  );
});

Deno.test("a payload failing the handler's schema is dead-lettered at once, naming the field", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const runs: number[] = [];
  const registry = diagnostics().add(defineHandler({
    event: "order.created",
    payload: z.object({ total: z.number() }),
    handle(event) {
      runs.push(event.payload.total);
    },
  }));
  const bad = await xadd(client, "s", wireEntry("order.created", "o1", { total: "12" }));
  const badTyped = await xadd(client, "s", wireEntry("diagnostic.typed", "t1", { n: "x" }));
  await xadd(client, "s", wireEntry("order.created", "o2", { total: 12 }));
  await startConsumer(cleanup, redis, { DIAGNOSTIC_EVENTS: "true", MAX_DELIVERIES: "5" }, registry);
  await waitFor(async () => await xlen(client, "s:dlq") === 2, { message: "2 dead letters" });
  const dlq = await readStream(client, "s:dlq");
  const byId = new Map(dlq.map((e) => [e.fields.sourceId, e.fields]));
  assertStringIncludes(byId.get(bad)!.error, "payload invalid: total:");
  assertEquals(byId.get(bad)!.deliveries, "1", "at once, not retried");
  assertStringIncludes(byId.get(badTyped)!.error, "payload invalid: n:");
  await waitFor(() => runs.length === 1, { message: "the valid one handled" });
  assertEquals(runs, [12]);
});

Deno.test("a handler past its timeoutMs fails; after MAX_DELIVERIES it is dead-lettered as timed out", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const id = await xadd(client, "s", wireEntry("diagnostic.hang", "h"));
  await startConsumer(
    cleanup,
    redis,
    { DIAGNOSTIC_EVENTS: "true", MAX_DELIVERIES: "2" },
    diagnostics(),
  );
  const [dead] = await waitFor(async () => {
    const dlq = await readStream(client, "s:dlq");
    return dlq.length === 1 ? dlq : undefined;
  }, { timeoutMs: 20_000, message: "dead-lettered" });
  assertEquals(dead.fields.sourceId, id);
  assertEquals(dead.fields.deliveries, "2");
  assertStringIncludes(dead.fields.error, "timed out after 1000 ms");
});

Deno.test("a handler's concurrency bounds its runs at once", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const g = gate();
  let running = 0;
  let most = 0;
  let done = 0;
  const registry = new HandlerRegistry().add(defineHandler({
    event: "slow.*",
    concurrency: 2,
    async handle() {
      running++;
      most = Math.max(most, running);
      await g.promise;
      running--;
      done++;
    },
  }));
  for (let i = 0; i < 6; i++) await xadd(client, "s", wireEntry("slow.job", `agg-${i}`));
  await startConsumer(cleanup, redis, { HANDLER_CONCURRENCY: "16" }, registry);
  await waitFor(() => running === 2, { message: "two running" });
  assertEquals(await pendingCount(client, "s", GROUP), 6, "all six read, four waiting");
  g.open();
  await waitFor(() => done === 6, { message: "all six done" });
  assertEquals(most, 2);
});
