/**
 * Unit tests of src/stream/handlers.ts: `HandlerRegistry` resolution (exact
 * names beat patterns, patterns in registration order, fallback), the default
 * handler's log levels (INFO for manual_test / test_starters, DEBUG otherwise,
 * captured through `setupLogging({write})`), and the diagnostic handlers
 * (`diagnostic.fail` failTimes rule, `diagnostic.sleep` abort).
 */
import { getLogger, resetLogging, setupLogging } from "../../src/log.ts";
import type { StreamEvent } from "../../src/stream/entry.ts";
import { defaultHandler, type Handler, HandlerRegistry } from "../../src/stream/handlers.ts";
import type { HandlerContext } from "../../src/stream/handler_api.ts";
import { registerDiagnosticHandlers } from "../../src/stream/diagnostic_handlers.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../support/assert.ts";

function event(type: string, payload: Record<string, unknown> = {}): StreamEvent {
  return {
    stream: "s",
    id: "1-0",
    event: type,
    aggregateId: "agg-1",
    payload,
    headers: {},
    fields: { event: type, payload: JSON.stringify(payload) },
  };
}

function ctx(deliveries = 1, signal = new AbortController().signal): HandlerContext {
  return {
    deliveries,
    logger: getLogger("test"),
    signal,
    publish: () => Promise.reject(new Error("publish is not expected here")),
  };
}

/** A named no-op handler, distinguishable by identity. */
function named(): Handler {
  return () => {};
}

Deno.test("HandlerRegistry.resolve() prefers an exact name over a pattern", () => {
  const pattern = named();
  const exact = named();
  const registry = new HandlerRegistry().on("order.*", pattern).on("order.created", exact);
  assert(registry.resolve("order.created").handle === exact);
  assert(registry.resolve("order.paid").handle === pattern);
});

Deno.test("HandlerRegistry.resolve() tries patterns in registration order", () => {
  const first = named();
  const second = named();
  const registry = new HandlerRegistry().on("order.*", first).on("*.created", second);
  assert(registry.resolve("order.created").handle === first);
  assert(registry.resolve("user.created").handle === second);
});

Deno.test("HandlerRegistry.resolve() answers the default handler, or the fallback", () => {
  const registry = new HandlerRegistry();
  assert(registry.resolve("anything").handle === defaultHandler);
  const fallback = named();
  registry.fallback(fallback);
  assert(registry.resolve("anything").handle === fallback, "fallback replaces a cached answer");
  const late = named();
  registry.on("anything", late);
  assert(
    registry.resolve("anything").handle === late,
    "a later registration replaces a cached answer",
  );
});

Deno.test("HandlerRegistry.on() rejects an empty pattern", () => {
  assertThrows(() => new HandlerRegistry().on("", named()), TypeError);
});

Deno.test("defaultHandler logs manual_test and test_starters at INFO, others at DEBUG", () => {
  const lines: string[] = [];
  setupLogging({ level: "DEBUG", format: "json", write: (l) => lines.push(l) });
  try {
    defaultHandler(event("manual_test"), ctx(1));
    defaultHandler(event("test_starters"), ctx(2));
    defaultHandler(event("order.created"), ctx(3));
  } finally {
    resetLogging();
  }
  const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assertEquals(records.map((r) => [r.level, r.event]), [
    ["INFO", "manual_test"],
    ["INFO", "test_starters"],
    ["DEBUG", "order.created"],
  ]);
  assertEquals(records[2].deliveries, 3);
  assertEquals(records[0].aggregateId, "agg-1");
});

Deno.test("defaultHandler lines for other events are dropped at level INFO", () => {
  const lines: string[] = [];
  setupLogging({ level: "INFO", write: (l) => lines.push(l) });
  try {
    defaultHandler(event("order.created"), ctx());
    defaultHandler(event("manual_test"), ctx());
  } finally {
    resetLogging();
  }
  assertEquals(lines.length, 1);
  assert(lines[0].includes(" INFO  ") && lines[0].includes("manual_test"), lines[0]);
});

function diagnostics(): HandlerRegistry {
  const registry = new HandlerRegistry();
  registerDiagnosticHandlers(registry);
  return registry;
}

/** How one handler call ended: "ok", or the message it threw. */
async function outcome(run: () => void | Promise<void>): Promise<string> {
  try {
    await run();
    return "ok";
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

Deno.test("diagnostic.fail with failTimes 2 throws on deliveries 1 and 2, then succeeds", async () => {
  const fail = diagnostics().resolve("diagnostic.fail").handle;
  const e = event("diagnostic.fail", { failTimes: 2 });
  const outcomes: string[] = [];
  for (const d of [1, 2, 3, 4]) outcomes.push(await outcome(() => fail(e, ctx(d))));
  assertEquals(outcomes, [
    "diagnostic.fail: failing delivery 1",
    "diagnostic.fail: failing delivery 2",
    "ok",
    "ok",
  ]);
});

Deno.test("diagnostic.fail without failTimes always throws", async () => {
  const fail = diagnostics().resolve("diagnostic.fail").handle;
  for (const d of [1, 2, 5, 1000]) {
    await assertRejects(async () => await fail(event("diagnostic.fail"), ctx(d)));
  }
  // A non-number failTimes counts as absent.
  await assertRejects(async () =>
    await fail(event("diagnostic.fail", { failTimes: "2" }), ctx(10))
  );
});

Deno.test("diagnostic.fail with failTimes 0 never throws", async () => {
  const fail = diagnostics().resolve("diagnostic.fail").handle;
  const outcomes: string[] = [];
  for (const d of [1, 2, 100]) {
    outcomes.push(await outcome(() => fail(event("diagnostic.fail", { failTimes: 0 }), ctx(d))));
  }
  assertEquals(outcomes, ["ok", "ok", "ok"]);
});

Deno.test("diagnostic.sleep resolves for a short ms and for a missing or unusable one", async () => {
  const sleep = diagnostics().resolve("diagnostic.sleep").handle;
  const outcomes: string[] = [];
  for (const payload of [{ ms: 1 }, {}, { ms: -5 }, { ms: "soon" }]) {
    const running = sleep(event("diagnostic.sleep", payload), ctx());
    assert(running instanceof Promise, "diagnostic.sleep returns a promise");
    outcomes.push(await outcome(() => running));
  }
  assertEquals(outcomes, ["ok", "ok", "ok", "ok"]);
});

Deno.test("diagnostic.sleep throws when its signal aborts", async () => {
  const sleep = diagnostics().resolve("diagnostic.sleep").handle;
  const ac = new AbortController();
  const running = sleep(event("diagnostic.sleep", { ms: 60_000 }), ctx(1, ac.signal));
  ac.abort();
  await assertRejects(async () => await running, Error, "aborted");
  // Already aborted before it starts.
  await assertRejects(
    async () => await sleep(event("diagnostic.sleep", { ms: 60_000 }), ctx(1, ac.signal)),
    Error,
    "aborted",
  );
});
