/**
 * The handler API without Redis: `defineHandler` checks, the payload error text, the
 * concurrency `Limiter`, the registry's resolution of definitions, and the test kit
 * `testHandler` (schema, emits, timeouts, failures emitting nothing).
 */
import { z } from "zod";
import { assert, assertEquals, assertStringIncludes, assertThrows } from "../support/assert.ts";
import { defineHandler, describePayloadError } from "../../src/stream/handler_api.ts";
import { HandlerRegistry, Limiter } from "../../src/stream/handlers.ts";
import { testHandler } from "../../src/testing.ts";

Deno.test("defineHandler() rejects an empty event, a missing handle and bad limits", () => {
  assertThrows(() => defineHandler({ event: "", handle() {} }), TypeError);
  // @ts-expect-error: handle is required
  assertThrows(() => defineHandler({ event: "x" }), TypeError);
  assertThrows(() => defineHandler({ event: "x", timeoutMs: 0, handle() {} }), RangeError);
  assertThrows(() => defineHandler({ event: "x", concurrency: 1.5, handle() {} }), RangeError);
  const ok = defineHandler({ event: "x.*", timeoutMs: 10, concurrency: 2, handle() {} });
  assertEquals([ok.event, ok.timeoutMs, ok.concurrency], ["x.*", 10, 2]);
});

Deno.test("describePayloadError() names every failing field", () => {
  const schema = z.object({ total: z.number(), lines: z.array(z.object({ sku: z.string() })) });
  const r = schema.safeParse({ total: "1", lines: [{ sku: 3 }] });
  assert(!r.success);
  const text = describePayloadError(r.error);
  assert(text.startsWith("payload invalid: "), text);
  assertStringIncludes(text, "total:");
  assertStringIncludes(text, "lines.0.sku:");
});

Deno.test("Limiter lets `limit` holders in and the next waiter in on release", async () => {
  const limiter = new Limiter(2);
  await limiter.acquire();
  await limiter.acquire();
  let third = false;
  const waiting = limiter.acquire().then(() => (third = true));
  await Promise.resolve();
  assertEquals([limiter.held, third], [2, false]);
  limiter.release();
  await waiting;
  assertEquals([limiter.held, third], [2, true]);
  limiter.release();
  limiter.release();
  assertEquals(limiter.held, 0);
  assertThrows(() => new Limiter(0), RangeError);
});

Deno.test("HandlerRegistry.add() resolves a definition with its schema, timeout and limiter", () => {
  const plain = defineHandler({ event: "a", handle() {} });
  const guarded = defineHandler({
    event: "b.*",
    payload: z.object({ n: z.number() }),
    timeoutMs: 5,
    concurrency: 3,
    handle() {},
  });
  const registry = new HandlerRegistry().add(plain).add(guarded);
  const a = registry.resolve("a");
  const b = registry.resolve("b.x");
  assertEquals([a.simple, a.schema, a.timeoutMs, a.limiter], [
    true,
    undefined,
    undefined,
    undefined,
  ]);
  assertEquals([b.simple, b.timeoutMs, b.limiter?.limit], [false, 5, 3]);
  assert(b.schema !== undefined);
  assertEquals(registry.names, ["a", "b.*"]);
});

Deno.test("testHandler() returns emits with causation and correlation, routed by ROUTES", async () => {
  const h = defineHandler({
    event: "order.paid",
    async handle(event, ctx) {
      await ctx.publish({ event: "invoice.requested", payload: { id: event.aggregateId } });
      await ctx.publish({ stream: "audit", event: "order.audited", payload: {}, aggregateId: "x" });
    },
  });
  const r = await testHandler(h, { id: "5-0", aggregateId: "o1" }, {
    routes: "invoice.*=>invoices,invoice.*=>billing",
  });
  assertEquals(r.error, undefined);
  assertEquals(r.emitted.map((e) => [e.stream, e.event, e.aggregateId]), [
    ["invoices", "invoice.requested", "o1"],
    ["billing", "invoice.requested", "o1"],
    ["audit", "order.audited", "x"],
  ]);
  assertEquals(r.emitted[0].headers, { causationId: "5-0", correlationId: "test-correlation" });
  assertEquals(r.emitted[0].fields.serviceName, "test-service");
});

Deno.test("testHandler(): a publish without a target fails the delivery, which emits nothing", async () => {
  const h = defineHandler({
    event: "x",
    async handle(_e, ctx) {
      await ctx.publish({ stream: "ok", event: "first", payload: {} });
      await ctx.publish({ event: "nowhere", payload: {} });
    },
  });
  const r = await testHandler(h);
  assertStringIncludes(r.error!.message, "no ROUTES target matches");
  assertEquals(r.emitted, []);
});

Deno.test("testHandler() aborts ctx.signal and fails past timeoutMs", async () => {
  let aborted = false;
  const h = defineHandler({
    event: "slow",
    timeoutMs: 20,
    async handle(_e, ctx) {
      await new Promise<void>((r) => ctx.signal.addEventListener("abort", () => r()));
      aborted = ctx.signal.aborted;
    },
  });
  const r = await testHandler(h);
  assertStringIncludes(r.error!.message, "timed out after 20 ms");
  assert(aborted, "the handler saw the abort");
});

Deno.test("testHandler() reports a payload failing the schema without running the handler", async () => {
  let ran = false;
  const h = defineHandler({
    event: "typed",
    payload: z.object({ n: z.number() }),
    handle() {
      ran = true;
    },
  });
  const r = await testHandler(h, { payload: { n: "1" } });
  assertEquals([r.payloadInvalid, ran], [true, false]);
  assertStringIncludes(r.error!.message, "payload invalid: n:");
  const good = await testHandler(h, { payload: { n: 1 } });
  assertEquals([good.payloadInvalid, good.error, ran], [false, undefined, true]);
});

Deno.test("testHandler() needs the event type for a pattern handler", async () => {
  const h = defineHandler({ event: "order.*", handle() {} });
  let message = "";
  try {
    await testHandler(h);
  } catch (err) {
    message = (err as Error).message;
  }
  assertStringIncludes(message, "is a pattern");
  assertEquals((await testHandler(h, { event: "order.created" })).error, undefined);
});
