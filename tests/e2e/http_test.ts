/**
 * End-to-end tests of the HTTP interface over a real socket (README, HTTP API), with the real
 * `main.ts` process and a real redis-server: `POST /trigger-test-event` publishing an entry in
 * the wire format that the service then consumes (acknowledged, checkpoint written), once per
 * `Idempotency-Key`, its error answers (400, 401, 413, 415, 429 after a burst of 10 and 503 while
 * Redis is down, with `Retry-After`), probes that are never rate limited, trailing slashes, either
 * API key header, the dead-letter replay's body rules, and the hygiene of every response: one
 * error shape, `X-Correlation-ID` echoed or generated, security headers, no stack traces, no
 * secret in the log, and every answer as /openapi.json documents it.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import {
  serviceEnvFor,
  type ServiceResponse,
  STACK_TRACE_RE,
  startService,
} from "../support/service.ts";
import { OpenApiConformance } from "../support/openapi.ts";
import { waitFor } from "../support/wait.ts";
import { checkpoint, groupInfo, pendingSummary, readStream, xlen } from "../support/streams.ts";

const STREAM = "http-events";
const NAME = "http-e2e";
const CONSUMER = "http-1";
const API_KEY = "e2e-api-key-5f3a9c";
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A response with what was sent, so the hygiene checks can tell which request it was. */
interface Seen {
  what: string;
  method: string;
  path: string;
  sentCorrelationId?: string;
  res: ServiceResponse;
}

Deno.test("POST /trigger-test-event publishes, is consumed, and answers errors cleanly over HTTP", async (t) => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const svc = cleanup.use(
    await startService({
      env: serviceEnvFor(redis, NAME, CONSUMER, {
        STREAM,
        API_KEY,
        TIMEZONE: "Asia/Kolkata", // +05:30 all year: the published timestamp must carry it
      }),
    }),
  );
  const client = await redis.client();
  const seen: Seen[] = [];
  const call = async (
    what: string,
    path: string,
    init: RequestInit & { correlationId?: string } = {},
  ): Promise<ServiceResponse> => {
    const { correlationId, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (correlationId !== undefined) headers.set("X-Correlation-ID", correlationId);
    const res = await svc.request(path, { ...rest, headers });
    seen.push({ what, method: rest.method ?? "GET", path, sentCorrelationId: correlationId, res });
    return res;
  };
  const trigger = (what: string, init: RequestInit & { correlationId?: string } = {}) =>
    call(what, "/trigger-test-event", {
      method: "POST",
      ...init,
      headers: { "X-API-Key": API_KEY, ...init.headers as Record<string, string> },
    });

  await t.step("publishes an entry in the wire format that the service consumes", async () => {
    const correlationId = "corr-http-0001";
    const data = { total: 12.5, items: ["a", "b"] };
    const res = await trigger("valid trigger", {
      correlationId,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ event: "order.created", aggregateId: "order-42", data }),
    });
    assertEquals(res.status, 200, res.text);
    const body = res.json as Record<string, unknown>;
    assertEquals(Object.keys(body).sort(), [
      "aggregateId",
      "correlationId",
      "event",
      "id",
      "stream",
      "success",
    ]);
    const id = String(body.id);
    assertMatch(id, /^\d+-\d+$/);
    assertEquals(
      { ...body, id: undefined },
      {
        success: true,
        id: undefined,
        stream: STREAM,
        event: "order.created",
        aggregateId: "order-42",
        correlationId,
      },
    );

    const entries = await readStream(client, STREAM);
    assertEquals(entries.map((e) => e.id), [id]);
    const f = entries[0].fields;
    assertEquals(f.event, "order.created");
    assertEquals(f.aggregateId, "order-42");
    assertEquals(f.serviceName, NAME);
    assertEquals(JSON.parse(f.payload), data);
    assertMatch(f.timestamp, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?\+05:30$/);
    const headers = JSON.parse(f.headers) as Record<string, string>;
    assertEquals(headers.correlationId, correlationId);

    // Consumed by the service: acknowledged, checkpoint moved to the entry.
    await waitFor(async () => (await checkpoint(client, STREAM, NAME))[CONSUMER] === id, {
      message: `checkpoint of ${CONSUMER} to reach ${id}`,
    });
    const cp = await checkpoint(client, STREAM, NAME);
    assert(
      !Number.isNaN(Date.parse(cp[`${CONSUMER}:at`])),
      `checkpoint time: ${cp[`${CONSUMER}:at`]}`,
    );
    assertEquals((await pendingSummary(client, STREAM, NAME)).total, 0);
    const group = await groupInfo(client, STREAM, NAME);
    assertEquals([group?.lag, group?.lastDeliveredId], [0, id]);
  });

  await t.step("allows a burst of 10, then answers 429 with Retry-After", async () => {
    // RATE_LIMIT_BURST defaults to 10 and RATE_LIMIT_PER_SECOND to 1: quick requests get at
    // least 10 answers of 200, less the tokens spent above (tokens only come back), then a 429.
    const spent = seen.filter((s) => s.path === "/trigger-test-event" && s.res.status === 200);
    const before = await xlen(client, STREAM);
    let allowed = 0;
    let res = await trigger("rate limit");
    for (let i = 0; i < 40 && res.status === 200; i++) {
      allowed++;
      res = await trigger("rate limit");
    }
    assertEquals(res.status, 429, res.text);
    assert(
      allowed >= 10 - spent.length,
      `only ${allowed} requests allowed before the 429 (burst 10, ${spent.length} spent before)`,
    );
    const retryAfter = Number(res.headers.get("retry-after"));
    assert(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After: ${retryAfter}`);
    assertEquals((res.json as Record<string, unknown>).error, "rate_limited");
    assertEquals(
      await xlen(client, STREAM),
      before + allowed,
      "a limited request publishes nothing",
    );
  });

  await t.step("publishes once per Idempotency-Key, whatever the repeat's body", async () => {
    const allowed = async (body: unknown) => {
      let last: ServiceResponse | undefined;
      await waitFor(async () => {
        last = await trigger("idempotency", {
          headers: { "Content-Type": "application/json", "Idempotency-Key": "order-42-create" },
          body: JSON.stringify(body),
        });
        return last.status !== 429;
      }, { message: "a trigger request past the rate limit" });
      return last!;
    };
    const first = await allowed({ event: "order.created", data: { n: 1 } });
    assertEquals(first.status, 200, first.text);
    const before = await xlen(client, STREAM);
    const repeat = await allowed({ event: "order.cancelled", data: { n: 2 } });
    assertEquals(repeat.status, 200, repeat.text);
    const a = first.json as Record<string, unknown>;
    const b = repeat.json as Record<string, unknown>;
    assertEquals([a.duplicate, b.duplicate], [false, true]);
    assertEquals([b.id, b.event], [a.id, "order.created"], "the first publication's answer");
    assertEquals(await xlen(client, STREAM), before, "the repeat publishes nothing");
  });

  await t.step("never rate limits the health probes", async () => {
    for (let i = 0; i < 20; i++) {
      for (const path of ["/health/live", "/health/ready", "/health", "/health-check"]) {
        const res = await svc.request(path);
        assertEquals(res.status, 200, `${path} request ${i + 1}: ${res.text}`);
      }
    }
  });

  await t.step("answers 401 without the API key or with a wrong one", async () => {
    const before = await xlen(client, STREAM);
    for (
      const [what, headers] of [
        ["no key", {}],
        ["wrong X-API-Key", { "X-API-Key": "not-the-key" }],
        ["wrong bearer", { Authorization: "Bearer not-the-key" }],
      ] as const
    ) {
      const res = await call(`401: ${what}`, "/trigger-test-event", {
        method: "POST",
        headers,
        correlationId: "corr-unauthorized",
      });
      assertEquals(res.status, 401, `${what}: ${res.text}`);
      assertEquals((res.json as Record<string, unknown>).error, "unauthorized");
    }
    const admin = await call("401: admin", "/admin/streams");
    assertEquals(admin.status, 401, admin.text);
    const bearer = await call("bearer key", "/admin/streams", {
      headers: { Authorization: `Bearer ${API_KEY}` },
    });
    assertEquals(bearer.status, 200, bearer.text);
    const either = await call("right bearer, wrong X-API-Key", "/admin/streams", {
      headers: { Authorization: `Bearer ${API_KEY}`, "X-API-Key": "not-the-key" },
    });
    assertEquals(either.status, 200, either.text);
    assertEquals(await xlen(client, STREAM), before, "unauthorized requests publish nothing");
  });

  await t.step("answers 400, 413 and 415 to bad bodies and publishes nothing", async () => {
    const before = await xlen(client, STREAM);
    const json = { "Content-Type": "application/json" };

    const malformed = await trigger("400: malformed JSON", {
      headers: json,
      body: '{"event": "order.created",',
      correlationId: "corr-malformed",
    });
    assertEquals(malformed.status, 400, malformed.text);
    assertEquals((malformed.json as Record<string, unknown>).success, false);
    assertEquals((malformed.json as Record<string, unknown>).error, "invalid_json");

    const invalid = await trigger("400: schema", {
      headers: json,
      body: JSON.stringify({ event: "has spaces!", data: [1, 2] }),
    });
    assertEquals(invalid.status, 400, invalid.text);
    const details = (invalid.json as { details: { path: string }[] }).details;
    assertEquals(details.map((d) => d.path).sort(), ["data", "event"]);

    const otherStream = await trigger("400: stream", {
      headers: json,
      body: JSON.stringify({ stream: "not-consumed" }),
    });
    assertEquals(otherStream.status, 400, otherStream.text);

    const big = JSON.stringify({ data: { blob: "x".repeat(11 * 1024) } });
    const tooLarge = await trigger("413: declared length", { headers: json, body: big });
    assertEquals(tooLarge.status, 413, tooLarge.text);

    // Without Content-Length (chunked): the limit holds while streaming too.
    const chunked = await trigger("413: chunked", {
      headers: json,
      body: ReadableStream.from([new TextEncoder().encode(big)]),
    });
    assertEquals(chunked.status, 413, chunked.text);

    const text = await trigger("415: text/plain", {
      headers: { "Content-Type": "text/plain" },
      body: "hello",
    });
    assertEquals(text.status, 415, text.text);
    assertEquals(await xlen(client, STREAM), before, "rejected requests publish nothing");
  });

  await t.step(
    "answers 404 JSON to unknown paths, 405 to a known path's wrong method",
    async () => {
      const res = await call("404", "/no/such/route", { correlationId: "corr-404" });
      assertEquals(res.status, 404, res.text);
      assertEquals((res.json as Record<string, unknown>).error, "not_found");
      const wrongMethod = await call("405: GET trigger", "/trigger-test-event");
      assertEquals(wrongMethod.status, 405, wrongMethod.text);
      assertEquals(wrongMethod.headers.get("allow"), "POST");
      assertEquals((wrongMethod.json as Record<string, unknown>).error, "method_not_allowed");
      await call("bad correlation id", "/health/live", { correlationId: "has spaces and ümlauts" });
      await call("no correlation id", "/health/ready");
    },
  );

  await t.step("answers a known path with a trailing slash as the path without it", async () => {
    const live = await call("trailing slash: live", "/health/live/");
    assertEquals([live.status, live.text], [200, "OK"]);
    const streams = await call("trailing slash: admin", "/admin/streams/", {
      headers: { "X-API-Key": API_KEY },
    });
    assertEquals(streams.status, 200, streams.text);
  });

  await t.step("replays dead letters with the trigger's body rules", async () => {
    const auth = { "X-API-Key": API_KEY };
    const plain = await call("replay: text/plain", "/admin/dlq/replay", {
      method: "POST",
      headers: { ...auth, "Content-Type": "text/plain" },
      body: JSON.stringify({ stream: STREAM }),
    });
    assertEquals(plain.status, 415, plain.text);
    const ok = await call("replay", "/admin/dlq/replay", {
      method: "POST",
      headers: { ...auth, "Content-Type": "application/json" },
      body: JSON.stringify({ stream: STREAM, count: 5 }),
    });
    assertEquals(ok.status, 200, ok.text);
    assertEquals(ok.json, { success: true, stream: STREAM, replayed: 0, ids: [] });
    await call("openapi", "/openapi.json");
    await call("health report", "/health");
    await call("metrics", "/metrics");
  });

  await t.step("answers only what /openapi.json documents", async () => {
    const doc = (await svc.request("/openapi.json")).json as Record<string, unknown>;
    const api = new OpenApiConformance(doc);
    const routes = Object.keys(doc.paths as Record<string, unknown>);
    const problems = seen.flatMap(({ method, path, res }) => {
      const bare = path.length > 1 ? path.replace(/\/$/, "") : path;
      return api.check(method, routes.includes(bare) ? bare : undefined, res);
    });
    assertEquals(problems, []);
  });

  await t.step(
    "puts X-Correlation-ID and security headers on every response, no stack traces",
    () => {
      assert(seen.length >= 15, `requests made: ${seen.length}`);
      for (const { what, sentCorrelationId, res } of seen) {
        const id = res.headers.get("x-correlation-id");
        assert(id, `${what}: no X-Correlation-ID`);
        if (sentCorrelationId && /^[A-Za-z0-9._:-]{1,128}$/.test(sentCorrelationId)) {
          assertEquals(id, sentCorrelationId, `${what}: the given correlation id is echoed`);
        } else assertMatch(id, UUID_RE, `${what}: a new correlation id is made`);
        assertEquals(res.headers.get("x-content-type-options"), "nosniff", what);
        assert(res.headers.get("x-frame-options"), `${what}: X-Frame-Options`);
        assert(res.headers.get("referrer-policy"), `${what}: Referrer-Policy`);
        assert(!STACK_TRACE_RE.test(res.text), `${what}: stack trace in body: ${res.text}`);
        if (res.status >= 400) {
          const body = res.json as Record<string, unknown>;
          assertEquals([body?.success, typeof body?.error], [false, "string"], what);
          assertEquals(typeof body?.message, "string", what);
        }
      }
      const statuses = new Set(seen.map((s) => s.res.status));
      for (const s of [200, 400, 401, 404, 413, 415, 429]) assert(statuses.has(s), `saw ${s}`);
    },
  );

  await t.step("never writes the API key to its output", () => {
    assert(!svc.output().includes(API_KEY), "the API key appears in the service output");
  });
});

Deno.test("POST /trigger-test-event answers 503 with Retry-After while Redis is down", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const svc = cleanup.use(
    await startService({
      env: serviceEnvFor(redis, "http-down-e2e", "http-down-1", {
        STREAM,
        RATE_LIMIT_PER_SECOND: "100",
      }),
    }),
  );
  const post = () =>
    svc.request("/trigger-test-event", {
      method: "POST",
      headers: { "X-Correlation-ID": "corr-down" },
    });
  const first = await post();
  assertEquals(first.status, 200, first.text);
  // Consumed before the kill, so that the shutdown at the end has nothing left to acknowledge.
  const client = await redis.client();
  const id = String((first.json as Record<string, unknown>).id);
  await waitFor(
    async () => (await checkpoint(client, STREAM, "http-down-e2e"))["http-down-1"] === id,
    {
      message: `${id} to be acknowledged`,
    },
  );

  await redis.kill();
  await waitFor(async () => (await svc.request("/health/ready")).status === 503, {
    message: "readiness to turn 503 after Redis was killed",
  });
  const res = await post();
  assertEquals(res.status, 503, res.text);
  const retryAfter = Number(res.headers.get("retry-after"));
  assert(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After: ${retryAfter}`);
  assertEquals((res.json as Record<string, unknown>).success, false);
  assertEquals(res.headers.get("x-correlation-id"), "corr-down");
  assert(!STACK_TRACE_RE.test(res.text), `stack trace in body: ${res.text}`);

  await redis.restart();
  await svc.waitReady(30_000);
  const again = await post();
  assertEquals(again.status, 200, again.text);
});
