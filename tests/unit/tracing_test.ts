/**
 * Unit tests of `src/tracing.ts`: the W3C `traceparent` / `tracestate` codec (inject, extract,
 * parse), that a span started by `withSpan` continues the trace of a message's headers, and
 * that the disabled tracing is a pass-through that adds nothing. No exporter is involved: the
 * test registers Deno's context manager with `@opentelemetry/api` (when the runtime did not
 * already, i.e. without `OTEL_DENO=true`) so that active contexts work; span ids then come from
 * the API's no-op tracer (which keeps the parent's ids) or, with `OTEL_DENO=true`, from Deno.
 *
 * @module
 */
import {
  context,
  createTraceState,
  ROOT_CONTEXT,
  type SpanContext,
  trace,
} from "@opentelemetry/api";
import {
  createTracing,
  exporterProblem,
  formatTraceparent,
  NO_TRACING,
  parseTraceparent,
} from "../../src/tracing.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotEquals,
  assertRejects,
  assertStringIncludes,
} from "../support/assert.ts";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const SPAN_ID = "b7ad6b7169203331";
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`;

function remote(traceState?: string): SpanContext {
  const sc: SpanContext = { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1, isRemote: true };
  if (traceState) sc.traceState = createTraceState(traceState);
  return sc;
}

/** Runs `fn` with Deno's context manager registered (unless the runtime registered one). */
async function withContextManager(fn: () => Promise<void>): Promise<void> {
  const registered = context.setGlobalContextManager(Deno.telemetry.contextManager);
  try {
    await fn();
  } finally {
    if (registered) context.disable();
  }
}

Deno.test("createTracing() with enabled false is a pass-through that adds nothing", async () => {
  const tracing = createTracing({ enabled: false, serviceName: "svc" });
  assert(tracing === NO_TRACING, "disabled tracing is the shared pass-through");
  assertEquals(tracing.enabled, false);
  const headers = { correlationId: "c-1" };
  const ctx = trace.setSpanContext(ROOT_CONTEXT, remote("vendor=abc"));
  assert(tracing.inject(headers, ctx) === headers, "inject returns the same object");
  assertEquals(headers, { correlationId: "c-1" });
  assertEquals(tracing.extract({ traceparent: TRACEPARENT }), undefined);
  assertEquals(tracing.activeSpan(), undefined);
  const seen: unknown[] = [];
  const result = await tracing.withSpan("work", { kind: "consumer" }, (span) => {
    seen.push(span);
    return 42;
  });
  assertEquals(result, 42);
  assertEquals(seen, [undefined]);
  await assertRejects(
    () => tracing.withSpan("work", {}, () => Promise.reject(new Error("boom"))),
    Error,
    "boom",
  );
});

Deno.test("inject() writes traceparent and tracestate of the span in the context", () => {
  const tracing = createTracing({ enabled: true, serviceName: "svc" });
  const headers: Record<string, string> = { correlationId: "c-1" };
  tracing.inject(headers, trace.setSpanContext(ROOT_CONTEXT, remote("vendor=abc,other=1")));
  assertEquals(headers, {
    correlationId: "c-1",
    traceparent: TRACEPARENT,
    tracestate: "vendor=abc,other=1",
  });
});

Deno.test("inject() writes nothing when the context holds no valid span", () => {
  const tracing = createTracing({ enabled: true, serviceName: "svc" });
  const headers: Record<string, string> = { correlationId: "c-1" };
  tracing.inject(headers, ROOT_CONTEXT);
  const invalid = { ...remote(), traceId: "0".repeat(32) };
  tracing.inject(headers, trace.setSpanContext(ROOT_CONTEXT, invalid));
  assertEquals(headers, { correlationId: "c-1" });
});

Deno.test("extract() gives back, as a remote parent, the context inject() wrote", () => {
  const tracing = createTracing({ enabled: true, serviceName: "svc" });
  const headers = tracing.inject({}, trace.setSpanContext(ROOT_CONTEXT, remote("vendor=abc")));
  const ctx = tracing.extract(headers);
  assert(ctx !== undefined, "a valid traceparent gives a context");
  const sc = trace.getSpanContext(ctx)!;
  assertEquals(
    { traceId: sc.traceId, spanId: sc.spanId, traceFlags: sc.traceFlags, isRemote: sc.isRemote },
    { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1, isRemote: true },
  );
  assertEquals(sc.traceState?.serialize(), "vendor=abc");
  assertEquals(tracing.extract({ correlationId: "c-1" }), undefined);
  assertEquals(tracing.extract({ traceparent: "garbage" }), undefined);
});

Deno.test("parseTraceparent() rejects values that are not W3C trace context", () => {
  const bad = [
    "",
    "garbage",
    `ff-${TRACE_ID}-${SPAN_ID}-01`, // version ff is invalid
    `00-${TRACE_ID}-${SPAN_ID}-01-extra`, // version 00 has exactly four fields
    `00-${"0".repeat(32)}-${SPAN_ID}-01`, // all-zero trace id
    `00-${TRACE_ID}-${"0".repeat(16)}-01`, // all-zero span id
    `00-${TRACE_ID.toUpperCase()}-${SPAN_ID}-01`, // upper-case hex
    `00-${TRACE_ID.slice(1)}-${SPAN_ID}-01`, // short trace id
    `00-${TRACE_ID}-${SPAN_ID}-1`, // short flags
  ];
  for (const value of bad) assertEquals(parseTraceparent(value), undefined, value);
  assertEquals(parseTraceparent(undefined), undefined);
});

Deno.test("parseTraceparent() reads a later version by its version-00 prefix", () => {
  const sc = parseTraceparent(`01-${TRACE_ID}-${SPAN_ID}-03-future`);
  assertEquals(sc, { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1, isRemote: true });
  assertEquals(parseTraceparent(`00-${TRACE_ID}-${SPAN_ID}-00`)?.traceFlags, 0);
});

Deno.test("formatTraceparent() writes version 00 with two-digit flags", () => {
  const unsampled = formatTraceparent({ traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 0 });
  assertEquals(unsampled, `00-${TRACE_ID}-${SPAN_ID}-00`);
  assertEquals(formatTraceparent(remote()), TRACEPARENT);
});

Deno.test("withSpan() continues the trace of parentHeaders with an active span", async () => {
  await withContextManager(async () => {
    const tracing = createTracing({ enabled: true, serviceName: "svc" });
    const written = await tracing.withSpan(
      "process s",
      { kind: "consumer", parentHeaders: { traceparent: TRACEPARENT, correlationId: "c-1" } },
      async (span) => {
        assert(span !== undefined, "enabled tracing hands the span to fn");
        await Promise.resolve(); // the span stays active across awaits
        assert(tracing.activeSpan() === span, "the span is the active one");
        return { headers: tracing.inject({}), spanId: span.spanContext().spanId };
      },
    );
    assertMatch(written.headers.traceparent ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const [, traceId, spanId] = written.headers.traceparent.split("-");
    assertEquals(traceId, TRACE_ID, "same trace as the parent");
    assertEquals(spanId, written.spanId, "the injected span is the active span");
  });
});

Deno.test("withSpan() starts a new trace when parentHeaders carry no traceparent", async () => {
  await withContextManager(async () => {
    const tracing = createTracing({ enabled: true, serviceName: "svc" });
    const outer = trace.setSpanContext(ROOT_CONTEXT, remote());
    const inner = await context.with(
      outer,
      () =>
        tracing.withSpan("process s", { parentHeaders: { correlationId: "c-1" } }, (span) => {
          return span!.spanContext().traceId;
        }),
    );
    assertNotEquals(inner, TRACE_ID, "the ambient context is not the parent");
  });
});

Deno.test("withSpan() rethrows what fn throws when enabled", async () => {
  const tracing = createTracing({ enabled: true, serviceName: "svc" });
  await assertRejects(
    () => tracing.withSpan("work", {}, () => Promise.reject(new Error("handler failed"))),
    Error,
    "handler failed",
  );
  const value = await tracing.withSpan("work", { kind: "producer" }, () => "ok");
  assertEquals(value, "ok");
});

Deno.test("exporterProblem() asks for OTEL_DENO=true unless it is set exactly so", () => {
  assertEquals(exporterProblem({ OTEL_DENO: "true" }), undefined);
  for (const value of [undefined, "1", "TRUE", "false"]) {
    const problem = exporterProblem({ OTEL_DENO: value });
    assert(problem !== undefined, `OTEL_DENO=${value} is a problem`);
    assertStringIncludes(problem, "OTEL_DENO=true");
    assertStringIncludes(problem, "OTEL_EXPORTER_OTLP_ENDPOINT");
  }
});
