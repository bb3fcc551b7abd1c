/**
 * Unit tests of src/http/app.ts (and the route groups and middleware behind
 * it) through `app.request()`, without a socket or Redis: fake publisher,
 * admin, health source and availability, a real `Metrics` registry and a rate
 * limiter on a fake clock. Covers spec section 4: probes, 404, correlation id,
 * security headers, every trigger status (200/400/401/413/415/429/503/500),
 * idempotency keys, /metrics, /openapi.json and the admin routes.
 */
import { createApp, ROUTES } from "../../src/http/app.ts";
import type { HealthSnapshot } from "../../src/health_state.ts";
import { RateLimiter } from "../../src/http/rate_limit.ts";
import { Metrics } from "../../src/metrics.ts";
import { CircuitOpenError } from "../../src/redis/breaker.ts";
import { NotConnectedError } from "../../src/redis/connection.ts";
import type { StreamReport } from "../../src/stream/admin.ts";
import type { PublishRequest, PublishResult } from "../../src/stream/publisher.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../support/assert.ts";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const STREAMS = ["event-stream", "second"];
const NOW = new Date("2025-01-28T10:00:00.000Z");

type Json = Record<string, unknown>;

function healthy(): HealthSnapshot {
  return {
    now: NOW,
    startedAt: new Date(NOW.getTime() - 60_000),
    shuttingDown: false,
    service: { name: "svc", version: "1.0.0", environment: "test" },
    redis: { connected: true, latencyMs: 1, lastCheck: NOW, circuit: "closed" },
    consumer: {
      active: true,
      inFlight: 0,
      streams: [{
        stream: "event-stream",
        group: "svc",
        pending: 0,
        lag: 0,
        length: 0,
        consumers: 1,
        lastDeliveredId: null,
        dlqStream: "event-stream:dlq",
        dlqLength: 0,
      }],
    },
    group: "svc",
    consumerName: "pod-1",
    thresholds: { lag: 100, pending: 100 },
  };
}

interface HarnessOptions {
  apiKey?: string;
  trustProxy?: boolean;
  metricsEnabled?: boolean;
  rate?: number;
  publish?: (req: PublishRequest) => Promise<PublishResult>;
}

/** The app with fakes, plus what the fakes saw. */
function harness(o: HarnessOptions = {}) {
  let now = 1_000_000;
  const clock = { now: () => now, advance: (ms: number) => void (now += ms) };
  const published: PublishRequest[] = [];
  const replays: [string, number][] = [];
  const seenKeys = new Map<string, string>();
  const state = {
    health: healthy(),
    available: { ok: true } as { ok: true } | { ok: false; retryAfterSeconds: number },
  };
  let nextId = 1;
  const defaultPublish = (req: PublishRequest): Promise<PublishResult> => {
    const earlier = req.idempotencyKey ? seenKeys.get(req.idempotencyKey) : undefined;
    const id = earlier ?? `1700000000000-${nextId++}`;
    if (req.idempotencyKey && !earlier) seenKeys.set(req.idempotencyKey, id);
    return Promise.resolve({
      id,
      stream: req.stream,
      event: req.event,
      aggregateId: req.aggregateId,
      correlationId: req.correlationId,
      published: earlier === undefined,
    });
  };
  const metrics = new Metrics({ processMetrics: false });
  const app = createApp({
    health: () => state.health,
    publisher: {
      publish: (req) => {
        published.push(req);
        return (o.publish ?? defaultPublish)(req);
      },
    },
    admin: {
      report: (stream: string): Promise<StreamReport> =>
        Promise.resolve({
          stream,
          length: 3,
          groups: [],
          deadLetter: { stream: `${stream}:dlq`, length: 1 },
        }),
      replay: (stream: string, count: number) => {
        replays.push([stream, count]);
        return Promise.resolve(["1-1", "1-2"]);
      },
    },
    availability: () => state.available,
    metrics,
    streams: STREAMS,
    version: "9.9.9",
    http: {
      apiKey: o.apiKey,
      rateLimitPerSecond: o.rate ?? 1,
      trustProxy: o.trustProxy ?? false,
      metricsEnabled: o.metricsEnabled ?? true,
      requestTimeoutMs: 10_000,
    },
    limiter: new RateLimiter({ ratePerSecond: o.rate ?? 1, clock: clock.now }),
  });

  /** One request from `client` (remote address). */
  const request = (path: string, init: RequestInit = {}, client = "1.2.3.4") =>
    app.request(path, init, { remoteAddr: { transport: "tcp", hostname: client, port: 1 } });

  /** POST /trigger-test-event; the clock moves a second first so earlier calls do not limit it. */
  const trigger = (body?: BodyInit, headers: Record<string, string> = {}, client?: string) => {
    clock.advance(1000);
    const h = body === undefined ? headers : { "Content-Type": "application/json", ...headers };
    return request("/trigger-test-event", { method: "POST", body, headers: h }, client);
  };
  return { app, clock, metrics, published, replays, state, request, trigger };
}

async function json(res: Response): Promise<Json> {
  return await res.json() as Json;
}

/** A request body stream (no Content-Length) of `size` bytes of JSON-ish text. */
function streamBody(size: number): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(`{"data":{"p":"${"x".repeat(size - 17)}"}}`);
  let sent = false;
  return new ReadableStream({
    pull(controller) {
      if (sent) return controller.close();
      sent = true;
      // Two chunks, so the limit is enforced while streaming.
      controller.enqueue(bytes.subarray(0, 4000));
      controller.enqueue(bytes.subarray(4000));
    },
  });
}

/** A JSON trigger body of exactly `size` bytes. */
function bodyOfSize(size: number): string {
  const s = `{"data":{"p":"${"x".repeat(size - 17)}"}}`;
  assertEquals(new TextEncoder().encode(s).length, size);
  return s;
}

// ---- probes -------------------------------------------------------------

Deno.test("GET /health/live answers 200 text OK", async () => {
  const res = await harness().request("/health/live");
  assertEquals(res.status, 200);
  assertStringIncludes(res.headers.get("content-type") ?? "", "text/plain");
  assertEquals(await res.text(), "OK");
});

Deno.test("GET /health/ready answers 200 ready or 503 not_ready with the reason", async () => {
  const h = harness();
  const ok = await h.request("/health/ready");
  assertEquals(ok.status, 200);
  assertEquals(await json(ok), { status: "ready", timestamp: NOW.toISOString() });

  h.state.health = { ...healthy(), redis: { ...healthy().redis, connected: false } };
  const down = await h.request("/health/ready");
  assertEquals(down.status, 503);
  assertEquals(await json(down), {
    status: "not_ready",
    reason: "redis_unavailable",
    timestamp: NOW.toISOString(),
  });

  h.state.health = { ...healthy(), shuttingDown: true };
  const stopping = await h.request("/health/ready");
  assertEquals(stopping.status, 503);
  assertEquals((await json(stopping)).reason, "shutting_down");
});

Deno.test("GET /health answers the report, 200 when healthy and 503 when unhealthy", async () => {
  const h = harness();
  const ok = await h.request("/health");
  assertEquals(ok.status, 200);
  const body = await json(ok);
  assertEquals(body.status, "healthy");
  assertEquals((body.service as Json).name, "svc");
  h.state.health = { ...healthy(), consumer: { ...healthy().consumer, active: false } };
  const bad = await h.request("/health");
  assertEquals(bad.status, 503);
  assertEquals((await json(bad)).status, "unhealthy");
});

Deno.test("GET /health-check answers ok or not ok", async () => {
  const h = harness();
  const ok = await h.request("/health-check");
  assertEquals([ok.status, await ok.text()], [200, "ok"]);
  h.state.health = { ...healthy(), redis: { ...healthy().redis, circuit: "open" } };
  const bad = await h.request("/health-check");
  assertEquals([bad.status, await bad.text()], [503, "not ok"]);
});

// ---- common behaviour ---------------------------------------------------

Deno.test("an unknown path answers 404 JSON not_found", async () => {
  const res = await harness().request("/nope");
  assertEquals(res.status, 404);
  assertEquals((await json(res)).error, "not_found");
  assertMatch(res.headers.get("x-correlation-id") ?? "", UUID_RE);
});

Deno.test("a known path with the wrong method answers 405 JSON with Allow", async () => {
  const h = harness();
  const get = await h.request("/trigger-test-event");
  assertEquals(get.status, 405);
  assertEquals(get.headers.get("allow"), "POST");
  assertEquals((await json(get)).error, "method_not_allowed");
  const post = await h.request("/health/live", { method: "POST" });
  assertEquals(post.status, 405);
  assertEquals(post.headers.get("allow"), "GET, HEAD");
  await post.body?.cancel();
  const head = await h.request("/health/live", { method: "HEAD" });
  assertEquals(head.status, 200, "HEAD goes with GET");
});

Deno.test("X-Correlation-ID is echoed when valid and replaced by a UUID when not", async () => {
  const h = harness();
  const valid = "Req-1.2_3:abc";
  const echoed = await h.request("/health/live", { headers: { "X-Correlation-ID": valid } });
  assertEquals(echoed.headers.get("x-correlation-id"), valid);
  const max = "a".repeat(128);
  const long = await h.request("/health/live", { headers: { "X-Correlation-ID": max } });
  assertEquals(long.headers.get("x-correlation-id"), max);

  for (const bad of ["a".repeat(200), "has spaces in it", "semi;colon", "a".repeat(129)]) {
    const res = await h.request("/health/live", { headers: { "X-Correlation-ID": bad } });
    const got = res.headers.get("x-correlation-id") ?? "";
    assertMatch(got, UUID_RE, `replacement for ${JSON.stringify(bad)}`);
  }
  const none = await h.request("/health/live");
  assertMatch(none.headers.get("x-correlation-id") ?? "", UUID_RE);
});

Deno.test("X-Correlation-ID is on 404, 401, 400 and 500 responses", async () => {
  const h = harness({
    apiKey: "secret-key-1",
    publish: () => Promise.reject(new Error("kaput")),
  });
  const hdr = { "X-Correlation-ID": "corr-42" };
  const auth = { ...hdr, "X-API-Key": "secret-key-1" };
  const responses = [
    await h.request("/missing", { headers: hdr }),
    await h.trigger(undefined, hdr),
    await h.trigger("{bad", auth),
    await h.trigger("{}", auth),
  ];
  assertEquals(responses.map((r) => r.status), [404, 401, 400, 500]);
  for (const r of responses) {
    assertEquals(r.headers.get("x-correlation-id"), "corr-42", `on ${r.status}`);
    await r.body?.cancel();
  }
});

Deno.test("responses carry the standard security headers", async () => {
  const h = harness({ publish: () => Promise.reject(new Error("kaput")) });
  for (const res of [await h.request("/health/live"), await h.request("/x"), await h.trigger()]) {
    assertEquals(res.headers.get("x-content-type-options"), "nosniff", `on ${res.status}`);
    assert(res.headers.get("x-frame-options"), `X-Frame-Options on ${res.status}`);
    await res.body?.cancel();
  }
});

// ---- trigger ------------------------------------------------------------

Deno.test("POST /trigger-test-event with an empty body publishes a default manual_test", async () => {
  const h = harness();
  const res = await h.trigger();
  assertEquals(res.status, 200);
  const body = await json(res);
  const correlationId = res.headers.get("x-correlation-id");
  assertEquals(h.published.length, 1);
  const req = h.published[0];
  assertEquals(req.event, "manual_test");
  assertEquals(req.stream, "event-stream");
  assertEquals(req.correlationId, correlationId);
  assertMatch(req.aggregateId, UUID_RE);
  assertEquals(typeof req.payload, "object");
  assertEquals(req.idempotencyKey, undefined);
  assertEquals(body, {
    success: true,
    id: "1700000000000-1",
    stream: "event-stream",
    event: "manual_test",
    aggregateId: req.aggregateId,
    correlationId,
  });
});

Deno.test("POST /trigger-test-event passes the body's fields to the publisher", async () => {
  const h = harness();
  const res = await h.trigger(
    JSON.stringify({
      event: "order.created",
      aggregateId: "order-7",
      data: { total: 3, nested: { ok: true } },
      stream: "second",
    }),
    { "X-Correlation-ID": "c-9" },
  );
  assertEquals(res.status, 200);
  assertEquals(h.published[0], {
    stream: "second",
    event: "order.created",
    aggregateId: "order-7",
    payload: { total: 3, nested: { ok: true } },
    correlationId: "c-9",
    idempotencyKey: undefined,
  });
  const body = await json(res);
  assertEquals([body.stream, body.event, body.aggregateId], ["second", "order.created", "order-7"]);
});

Deno.test("POST /trigger-test-event answers 400 for malformed JSON", async () => {
  const h = harness();
  const res = await h.trigger("{not json");
  assertEquals(res.status, 400);
  const body = await json(res);
  assertEquals(body.success, false);
  assertEquals(typeof body.error, "string");
  assertEquals(h.published.length, 0);
});

Deno.test("POST /trigger-test-event answers 400 with details for schema violations", async () => {
  const h = harness();
  const cases: [Json | unknown[], string][] = [
    [{ event: "bad event!" }, "event"],
    [{ event: "" }, "event"],
    [{ event: "e".repeat(101) }, "event"],
    [{ aggregateId: "a".repeat(201) }, "aggregateId"],
    [{ data: [1, 2] }, "data"],
    [{ data: "text" }, "data"],
    [{ stream: "unknown" }, "stream"],
    [[1, 2], ""],
  ];
  for (const [input, path] of cases) {
    const res = await h.trigger(JSON.stringify(input));
    assertEquals(res.status, 400, JSON.stringify(input));
    const body = await json(res);
    assertEquals(body.success, false);
    assertEquals(body.error, "validation_failed");
    const details = body.details as { path: string; message: string }[];
    assert(Array.isArray(details) && details.length > 0, "details listed");
    assert(details.some((d) => d.path === path), `path ${path} in ${JSON.stringify(details)}`);
  }
  assertEquals(h.published.length, 0);
  // The limits themselves are accepted.
  const edge = await h.trigger(
    JSON.stringify({ event: "e".repeat(100), aggregateId: "a".repeat(200) }),
  );
  assertEquals(edge.status, 200);
});

Deno.test("POST /trigger-test-event answers 413 at 10,241 bytes with a truthful Content-Length", async () => {
  const h = harness();
  const req = new Request("http://localhost/trigger-test-event", {
    method: "POST",
    body: bodyOfSize(10_241),
    headers: { "Content-Type": "application/json", "Content-Length": "10241" },
  });
  assertEquals(req.headers.get("content-length"), "10241");
  const res = await h.app.request(req, undefined, {
    remoteAddr: { transport: "tcp", hostname: "1.2.3.4", port: 1 },
  });
  assertEquals(res.status, 413);
  const body = await json(res);
  assertEquals([body.success, body.error], [false, "payload_too_large"]);
  assertEquals(h.published.length, 0);
});

Deno.test("POST /trigger-test-event answers 413 at 10,241 bytes without Content-Length", async () => {
  const h = harness();
  const req = new Request("http://localhost/trigger-test-event", {
    method: "POST",
    body: streamBody(10_241),
    headers: { "Content-Type": "application/json" },
  });
  assertEquals(req.headers.get("content-length"), null);
  const res = await h.app.request(req, undefined, {
    remoteAddr: { transport: "tcp", hostname: "1.2.3.4", port: 1 },
  });
  assertEquals(res.status, 413);
  await res.body?.cancel();
  assertEquals(h.published.length, 0);
});

Deno.test("POST /trigger-test-event accepts 10,240 bytes, with or without Content-Length", async () => {
  const h = harness();
  const res = await h.trigger(bodyOfSize(10_240), { "Content-Length": "10240" });
  assertEquals(res.status, 200);
  assertEquals((h.published[0].payload.p as string).length, 10_240 - 17);
  h.clock.advance(1000);
  const streamed = await h.app.request(
    new Request("http://localhost/trigger-test-event", {
      method: "POST",
      body: streamBody(10_240),
      headers: { "Content-Type": "application/json" },
    }),
    undefined,
    { remoteAddr: { transport: "tcp", hostname: "1.2.3.4", port: 1 } },
  );
  assertEquals(streamed.status, 200);
  await streamed.body?.cancel();
});

Deno.test("POST /trigger-test-event answers 415 for a text/plain body", async () => {
  const h = harness();
  const res = await h.trigger("hello", { "Content-Type": "text/plain" });
  assertEquals(res.status, 415);
  assertEquals((await json(res)).success, false);
  const noType = await h.request("/trigger-test-event", { method: "POST", body: "{}" });
  assertEquals(noType.status, 415, "a body without a JSON content type");
  await noType.body?.cancel();
  assertEquals(h.published.length, 0);
  const charset = await h.trigger("{}", { "Content-Type": "application/json; charset=utf-8" });
  assertEquals(charset.status, 200);
});

Deno.test("POST /trigger-test-event needs the API key when one is set", async () => {
  const key = "k3y-0123456789";
  const h = harness({ apiKey: key });
  const missing = await h.trigger();
  assertEquals(missing.status, 401);
  assertEquals((await json(missing)).success, false);
  const wrong = await h.trigger(undefined, { "X-API-Key": "nope" });
  assertEquals(wrong.status, 401);
  const wrongBearer = await h.trigger(undefined, { Authorization: `Bearer ${key}x` });
  assertEquals(wrongBearer.status, 401);
  const text = await wrongBearer.text();
  assert(!text.includes(key), "API key in the response");
  await wrong.body?.cancel();
  assertEquals(h.published.length, 0);

  const bearer = await h.trigger(undefined, { Authorization: `Bearer ${key}` });
  assertEquals(bearer.status, 200);
  const header = await h.trigger(undefined, { "X-API-Key": key });
  assertEquals(header.status, 200);
  assertEquals(h.published.length, 2);
});

Deno.test("POST /trigger-test-event answers 429 with Retry-After on a second request within a second", async () => {
  const h = harness();
  const path = "/trigger-test-event";
  const first = await h.request(path, { method: "POST" });
  assertEquals(first.status, 200);
  const second = await h.request(path, { method: "POST" });
  assertEquals(second.status, 429);
  assertEquals(second.headers.get("retry-after"), "1");
  assertEquals((await json(second)).success, false);
  const other = await h.request(path, { method: "POST" }, "5.6.7.8");
  assertEquals(other.status, 200, "another client is not limited");
  h.clock.advance(1000);
  assertEquals((await h.request(path, { method: "POST" })).status, 200);
  assertEquals(h.published.length, 3);
  // Probes are never rate limited.
  assertEquals((await h.request("/health/live")).status, 200);
});

Deno.test("X-Forwarded-For picks the client only with trustProxy", async () => {
  const path = "/trigger-test-event";
  const untrusted = harness({ trustProxy: false });
  const a = await untrusted.request(path, {
    method: "POST",
    headers: { "X-Forwarded-For": "9.9.9.1" },
  });
  const b = await untrusted.request(path, {
    method: "POST",
    headers: { "X-Forwarded-For": "9.9.9.2" },
  });
  assertEquals([a.status, b.status], [200, 429], "XFF ignored without trustProxy");

  const trusted = harness({ trustProxy: true });
  const c = await trusted.request(path, {
    method: "POST",
    headers: { "X-Forwarded-For": "9.9.9.1" },
  });
  const d = await trusted.request(path, {
    method: "POST",
    headers: { "X-Forwarded-For": "9.9.9.2, 10.0.0.1" },
  });
  const e = await trusted.request(path, {
    method: "POST",
    headers: { "X-Forwarded-For": "9.9.9.1, 10.0.0.7" },
  });
  assertEquals([c.status, d.status, e.status], [200, 200, 429]);
  // Without the header, the remote address is the client.
  const f = await trusted.request(path, { method: "POST" });
  const g = await trusted.request(path, { method: "POST" });
  assertEquals([f.status, g.status], [200, 429]);
});

Deno.test("bad trigger requests do not spend rate-limit tokens", async () => {
  const h = harness();
  const path = "/trigger-test-event";
  const post = (body?: string, type = "application/json") =>
    h.request(path, { method: "POST", body, headers: body ? { "Content-Type": type } : {} });
  assertEquals((await post("{bad")).status, 400);
  assertEquals((await post('{"event":"no spaces"}')).status, 400);
  assertEquals((await post("hi", "text/plain")).status, 415);
  assertEquals((await post(bodyOfSize(10_241))).status, 413);
  assertEquals((await post()).status, 200);
  assertEquals((await post()).status, 429);
});

Deno.test("POST /trigger-test-event answers 503 with Retry-After when Redis is unavailable", async () => {
  const h = harness();
  h.state.available = { ok: false, retryAfterSeconds: 7 };
  const res = await h.trigger();
  assertEquals(res.status, 503);
  assertEquals(res.headers.get("retry-after"), "7");
  assertEquals((await json(res)).success, false);
  assertEquals(h.published.length, 0);
});

Deno.test("POST /trigger-test-event maps NotConnectedError to 503", async () => {
  const h = harness({ publish: () => Promise.reject(new NotConnectedError("socket closed")) });
  const res = await h.trigger();
  assertEquals(res.status, 503);
  assert(res.headers.get("retry-after"), "Retry-After set");
  assertEquals((await json(res)).success, false);
});

Deno.test("POST /trigger-test-event maps CircuitOpenError to 503 with Retry-After", async () => {
  const h = harness({ publish: () => Promise.reject(new CircuitOpenError(2500)) });
  const res = await h.trigger();
  assertEquals(res.status, 503);
  assertEquals(res.headers.get("retry-after"), "3");
  assertEquals((await json(res)).success, false);
});

Deno.test("POST /trigger-test-event answers 500 without leaking the error", async () => {
  const leak = "password=hunter2 at /srv/app/secret.ts:12";
  const h = harness({ publish: () => Promise.reject(new Error(leak)) });
  const res = await h.trigger();
  assertEquals(res.status, 500);
  const text = await res.text();
  assert(!text.includes(leak), "error message in the response");
  assert(!text.includes("hunter2"), "error detail in the response");
  assert(!text.includes("secret.ts"), "stack in the response");
  assertEquals(JSON.parse(text).success, false);
});

Deno.test("POST /trigger-test-event passes Idempotency-Key to the publisher", async () => {
  const h = harness();
  const first = await h.trigger(undefined, { "Idempotency-Key": "key-123" });
  assertEquals(first.status, 200);
  assertEquals(h.published[0].idempotencyKey, "key-123");
  const firstBody = await json(first);
  assertEquals(firstBody.duplicate, false);
  const repeat = await h.trigger(JSON.stringify({ event: "other" }), {
    "Idempotency-Key": "key-123",
  });
  assertEquals(repeat.status, 200);
  const repeatBody = await json(repeat);
  assertEquals(repeatBody.id, firstBody.id);
  assertEquals(repeatBody.duplicate, true);
});

Deno.test("POST /trigger-test-event answers 400 for an invalid Idempotency-Key", async () => {
  const h = harness();
  for (const key of ["k".repeat(201), "has space"]) {
    const res = await h.trigger(undefined, { "Idempotency-Key": key });
    assertEquals(res.status, 400);
    assertEquals((await json(res)).success, false);
  }
  assertEquals(h.published.length, 0);
  const max = await h.trigger(undefined, { "Idempotency-Key": "k".repeat(200) });
  assertEquals(max.status, 200);
});

// ---- metrics and OpenAPI -------------------------------------------------

Deno.test("GET /metrics answers Prometheus text with route patterns as labels", async () => {
  const h = harness();
  await (await h.request("/health/live")).text();
  await (await h.trigger()).text();
  await (await h.request("/no/such/path/12345")).text();
  const res = await h.request("/metrics");
  assertEquals(res.status, 200);
  assertStringIncludes(res.headers.get("content-type") ?? "", "text/plain");
  const text = await res.text();
  assertStringIncludes(text, "# TYPE http_requests_total counter");
  assertStringIncludes(
    text,
    'http_requests_total{method="GET",route="/health/live",status="200"} 1',
  );
  assertStringIncludes(
    text,
    'http_requests_total{method="POST",route="/trigger-test-event",status="200"} 1',
  );
  assertStringIncludes(text, 'http_requests_total{method="GET",route="other",status="404"} 1');
  assert(!text.includes("12345"), "raw path used as a label");
  assertStringIncludes(text, "http_request_duration_seconds_bucket");
});

Deno.test("GET /metrics answers 404 when metrics are disabled", async () => {
  const res = await harness({ metricsEnabled: false }).request("/metrics");
  assertEquals(res.status, 404);
  assertEquals((await json(res)).error, "not_found");
});

Deno.test("GET /openapi.json is an OpenAPI 3 document of every route", async () => {
  const res = await harness().request("/openapi.json");
  assertEquals(res.status, 200);
  const doc = await json(res);
  assertMatch(String(doc.openapi), /^3\.\d+\.\d+$/);
  assertEquals((doc.info as Json).version, "9.9.9");
  const paths = Object.keys(doc.paths as Json).sort();
  assertEquals(paths, [...ROUTES].sort());
});

// ---- admin ---------------------------------------------------------------

Deno.test("admin routes need the API key when one is set", async () => {
  const key = "admin-key-123";
  const h = harness({ apiKey: key });
  const noKey = await h.request("/admin/streams");
  assertEquals(noKey.status, 401);
  await noKey.body?.cancel();
  const replayNoKey = await h.request("/admin/dlq/replay", {
    method: "POST",
    body: JSON.stringify({ stream: "event-stream" }),
    headers: { "Content-Type": "application/json" },
  });
  assertEquals(replayNoKey.status, 401);
  await replayNoKey.body?.cancel();
  assertEquals(h.replays.length, 0);

  const ok = await h.request("/admin/streams", { headers: { Authorization: `Bearer ${key}` } });
  assertEquals(ok.status, 200);
  const body = await json(ok);
  const streams = body.streams as StreamReport[];
  assertEquals(streams.map((s) => s.stream), STREAMS);
});

Deno.test("POST /admin/dlq/replay validates its body and replays", async () => {
  const key = "admin-key-123";
  const h = harness({ apiKey: key });
  const post = (body: string) =>
    h.request("/admin/dlq/replay", {
      method: "POST",
      body,
      headers: { "Content-Type": "application/json", "X-API-Key": key },
    });
  for (
    const bad of [
      "{oops",
      "{}",
      '{"stream":""}',
      '{"stream":"unknown"}',
      '{"stream":"event-stream","count":0}',
      '{"stream":"event-stream","count":1.5}',
      '{"stream":"event-stream","count":"5"}',
    ]
  ) {
    const res = await post(bad);
    assertEquals(res.status, 400, bad);
    assertEquals((await json(res)).success, false);
  }
  assertEquals(h.replays.length, 0);

  const res = await post('{"stream":"second"}');
  assertEquals(res.status, 200);
  assertEquals(await json(res), {
    success: true,
    stream: "second",
    replayed: 2,
    ids: ["1-1", "1-2"],
  });
  const counted = await post('{"stream":"event-stream","count":5}');
  assertEquals(counted.status, 200);
  await counted.body?.cancel();
  assertEquals(h.replays, [["second", 100], ["event-stream", 5]]);
});
