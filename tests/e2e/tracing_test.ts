/**
 * End-to-end tests of traces (`TRACE_ENABLED`, README: Traces): the service runs as a child
 * process with Deno's built-in OpenTelemetry exporter (`OTEL_DENO=true`) sending OTLP/HTTP JSON
 * to a small receiver in this test. They prove that a caller's trace continues through the
 * HTTP server span, the PRODUCER span of the publish (whose `traceparent` lands in the entry's
 * `headers`) and the CONSUMER span of the handled entry (its parent is that `traceparent`), that
 * a failing handler's span carries the exception and an error status, that `TRACE_ENABLED=false`
 * makes no publish or process spans and writes no `traceparent`, and that `TRACE_ENABLED=true`
 * without `OTEL_DENO=true` warns once and writes no `traceparent`.
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { freePort, waitFor } from "../support/wait.ts";
import { isDrained, readStream } from "../support/streams.ts";

const STREAM = "traced-stream";
const GROUP = "tracing";
const SPAN_KIND = { server: 2, producer: 4, consumer: 5 } as const;
const STATUS_ERROR = 2;

/** One span as received (OTLP/JSON), attributes flattened. */
interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  status: { code?: number; message?: string };
  events: { name: string; attributes: Record<string, unknown> }[];
  scope: string;
  service: unknown;
}

interface OtlpAttribute {
  key: string;
  value: Record<string, unknown>;
}

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: OtlpAttribute[];
  status?: { code?: number; message?: string };
  events?: { name: string; attributes?: OtlpAttribute[] }[];
}

interface OtlpTraces {
  resourceSpans?: {
    resource?: { attributes?: OtlpAttribute[] };
    scopeSpans?: { scope?: { name?: string }; spans?: OtlpSpan[] }[];
  }[];
}

function flatten(attrs: OtlpAttribute[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of attrs ?? []) out[key] = Object.values(value)[0];
  return out;
}

/** A minimal OTLP/HTTP JSON receiver: keeps every span posted to /v1/traces. */
class OtlpReceiver implements AsyncDisposable {
  readonly spans: ReceivedSpan[] = [];
  readonly port: number;
  readonly #server: Deno.HttpServer;

  constructor(port: number) {
    this.port = port;
    this.#server = Deno.serve(
      { port, hostname: "127.0.0.1", onListen: () => {} },
      async (req) => {
        const body = await req.text();
        if (new URL(req.url).pathname === "/v1/traces") this.#collect(JSON.parse(body));
        return Response.json({});
      },
    );
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  #collect(data: OtlpTraces): void {
    for (const rs of data.resourceSpans ?? []) {
      const service = flatten(rs.resource?.attributes)["service.name"];
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          this.spans.push({
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId ?? "",
            name: s.name,
            kind: s.kind,
            attributes: flatten(s.attributes),
            status: s.status ?? {},
            events: (s.events ?? []).map((e) => ({
              name: e.name,
              attributes: flatten(e.attributes),
            })),
            scope: ss.scope?.name ?? "",
            service,
          });
        }
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server.shutdown();
  }
}

/** The service's environment: Redis, the stream, and fast batches of the span exporter. */
function serviceEnv(
  redis: RedisServer,
  receiver: OtlpReceiver,
  extra: Record<string, string>,
): Record<string, string> {
  return {
    ...redis.env(),
    SERVICE_NAME: "trace-svc",
    STREAM,
    CONSUMER_GROUP: GROUP,
    LOG_LEVEL: "INFO",
    RATE_LIMIT_PER_SECOND: "100",
    DIAGNOSTIC_EVENTS: "true",
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_SERVICE_NAME: "trace-svc",
    OTEL_BSP_SCHEDULE_DELAY: "100",
    OTEL_DENO_CONSOLE: "ignore",
    ...extra,
  };
}

/** `headers` of the entry `id` of STREAM, parsed. */
async function entryHeaders(redis: RedisServer, id: string): Promise<Record<string, string>> {
  const client = await redis.client();
  const entry = (await readStream(client, STREAM)).find((e) => e.id === id);
  assert(entry !== undefined, `entry ${id} is in ${STREAM}`);
  return JSON.parse(entry.fields.headers) as Record<string, string>;
}

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("TRACE_ENABLED=true continues a caller's trace from the HTTP request to the handled entry", async () => {
  await using cleanup = new Cleanup();
  const receiver = cleanup.use(new OtlpReceiver(await freePort()));
  const redis = cleanup.use(await startRedis());
  const svc = cleanup.use(
    await startService({
      env: serviceEnv(redis, receiver, { TRACE_ENABLED: "true", OTEL_DENO: "true" }),
    }),
  );
  assert(!svc.output().includes("OTEL_DENO is not"), "no warning when OTEL_DENO=true");
  assertStringIncludes(svc.output(), `Traces on: OTLP http/json to ${receiver.endpoint}`);

  // The caller's own trace context, as a traced client would send it.
  const callerTrace = randomHex(16);
  const callerSpan = randomHex(8);
  const res = await svc.request("/trigger-test-event", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      traceparent: `00-${callerTrace}-${callerSpan}-01`,
    },
    body: JSON.stringify({ event: "order.created", aggregateId: "order-1", data: { n: 1 } }),
  });
  assertEquals(res.status, 200, res.text);
  const id = (res.json as { id: string }).id;

  // The entry carries the publish span's context.
  const headers = await entryHeaders(redis, id);
  const [version, traceId, parentId, flags] = (headers.traceparent ?? "").split("-");
  assertEquals([version, traceId, flags], ["00", callerTrace, "01"], headers.traceparent);

  const spans = await waitFor(() => {
    const server = receiver.spans.find((s) =>
      s.kind === SPAN_KIND.server && s.traceId === callerTrace
    );
    const publish = receiver.spans.find((s) => s.kind === SPAN_KIND.producer);
    const process = receiver.spans.find((s) =>
      s.kind === SPAN_KIND.consumer && s.attributes["messaging.message.id"] === id
    );
    return server && publish && process && { server, publish, process };
  }, { message: "server, publish and process spans exported", timeoutMs: 15_000 });

  const { server, publish, process } = spans;
  assertEquals(server.parentSpanId, callerSpan, "the server span continues the caller's span");
  assertEquals(server.name, "POST /trigger-test-event");
  assertEquals(server.attributes["http.route"], "/trigger-test-event");
  assertEquals(server.service, "trace-svc");

  assertEquals(publish.name, `publish ${STREAM}`);
  assertEquals(publish.traceId, callerTrace);
  assertEquals(publish.parentSpanId, server.spanId, "publish is a child of the request span");
  assertEquals(publish.spanId, parentId, "the entry's traceparent is the publish span");
  assertEquals(publish.attributes["messaging.system"], "redis");
  assertEquals(publish.attributes["messaging.destination.name"], STREAM);
  assertEquals(publish.attributes["messaging.message.id"], id);

  assertEquals(process.name, `process ${STREAM}`);
  assertEquals(process.traceId, callerTrace, "the consumer span is in the caller's trace");
  assertEquals(process.parentSpanId, publish.spanId, "its parent is the entry's traceparent");
  assertEquals(process.attributes["messaging.system"], "redis");
  assertEquals(process.attributes["messaging.destination.name"], STREAM);
  assertEquals(process.attributes["messaging.consumer.group.name"], GROUP);
  assertEquals(process.attributes["event.type"], "order.created");
  assertEquals(Number(process.attributes["messaging.message.deliveries"]), 1);
  assert(process.status.code !== STATUS_ERROR, "a successful handler's span is not an error");

  // A handler that fails once: the first process span records the exception and the error,
  // the retry's span succeeds; both continue the same publish span.
  const failing = await svc.request("/trigger-test-event", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ event: "diagnostic.fail", data: { failTimes: 1 } }),
  });
  assertEquals(failing.status, 200, failing.text);
  const failingId = (failing.json as { id: string }).id;
  const failingParent = (await entryHeaders(redis, failingId)).traceparent.split("-")[2];
  const attempts = await waitFor(() => {
    const found = receiver.spans.filter((s) =>
      s.kind === SPAN_KIND.consumer && s.attributes["messaging.message.id"] === failingId
    );
    return found.length >= 2 && found;
  }, { message: "two process spans of the failing entry", timeoutMs: 15_000 });
  const byDelivery = attempts.toSorted((a, b) =>
    Number(a.attributes["messaging.message.deliveries"]) -
    Number(b.attributes["messaging.message.deliveries"])
  );
  const [first, retry] = byDelivery;
  assertEquals(first.status.code, STATUS_ERROR, "the failed delivery's span is an error");
  const exception = first.events.find((e) => e.name === "exception");
  assert(exception !== undefined, "the failed delivery's span records the exception");
  assertStringIncludes(String(exception.attributes["exception.message"]), "diagnostic.fail");
  assert(retry.status.code !== STATUS_ERROR, "the successful retry's span is not an error");
  for (const s of byDelivery) assertEquals(s.parentSpanId, failingParent);

  const client = await redis.client();
  await waitFor(() => isDrained(client, STREAM, GROUP), { message: "stream drained" });
  assertEquals((await svc.stop()).code, 0);
});

Deno.test("TRACE_ENABLED=false makes no publish or process spans and writes no traceparent", async () => {
  await using cleanup = new Cleanup();
  const receiver = cleanup.use(new OtlpReceiver(await freePort()));
  const redis = cleanup.use(await startRedis());
  // OTEL_DENO=true: Deno still exports its own request spans, which shows the exporter works.
  const svc = cleanup.use(
    await startService({
      env: serviceEnv(redis, receiver, { TRACE_ENABLED: "false", OTEL_DENO: "true" }),
    }),
  );
  const res = await svc.request("/trigger-test-event", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ event: "order.created" }),
  });
  assertEquals(res.status, 200, res.text);
  const id = (res.json as { id: string }).id;
  const client = await redis.client();
  await waitFor(() => isDrained(client, STREAM, GROUP), { message: "entry handled" });
  assertEquals((await entryHeaders(redis, id)).traceparent, undefined);

  // A request after the entry was handled: once its span arrives, any span that ended
  // earlier (a process span would have) has been exported too.
  const marker = randomHex(16);
  const health = await svc.request("/health/live", {
    headers: { traceparent: `00-${marker}-${randomHex(8)}-01` },
  });
  assertEquals(health.status, 200);
  await waitFor(() => receiver.spans.some((s) => s.traceId === marker), {
    message: "the marker request's span exported",
    timeoutMs: 15_000,
  });
  const ours = receiver.spans.filter((s) =>
    s.kind === SPAN_KIND.producer || s.kind === SPAN_KIND.consumer
  );
  assertEquals(ours.map((s) => s.name), []);
  assertEquals((await svc.stop()).code, 0);
});

Deno.test("TRACE_ENABLED=true without OTEL_DENO=true warns once and writes no traceparent", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const svc = cleanup.use(
    await startService({
      env: {
        ...redis.env(),
        SERVICE_NAME: "trace-svc",
        STREAM,
        CONSUMER_GROUP: GROUP,
        LOG_LEVEL: "INFO",
        TRACE_ENABLED: "true",
      },
    }),
  );
  const res = await svc.request("/trigger-test-event", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ event: "order.created" }),
  });
  assertEquals(res.status, 200, res.text);
  const id = (res.json as { id: string }).id;
  const client = await redis.client();
  await waitFor(() => isDrained(client, STREAM, GROUP), { message: "entry handled" });
  assertEquals((await entryHeaders(redis, id)).traceparent, undefined);
  const warnings = svc.lines.filter((l) => l.includes("OTEL_DENO is not"));
  assertEquals(warnings.length, 1, svc.output());
  assertStringIncludes(warnings[0], "WARN");
  assertStringIncludes(warnings[0], "OTEL_EXPORTER_OTLP_ENDPOINT");
  assertEquals((await svc.stop()).code, 0);
});
