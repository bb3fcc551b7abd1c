/**
 * Unit tests of src/http/openapi.ts: `/openapi.json` is a valid OpenAPI document (checked by
 * `@seriousme/openapi-schema-validator`), describes every route and what the README promises
 * (duplicate, the replay count limit, 404/405/429/503/504), and real answers of every route
 * and status, made through `app.request()` with fakes, validate against it (Ajv, JSON Schema
 * 2020-12).
 */
import { ROUTES } from "../../src/http/app.ts";
import { MAX_JSON_BODY_BYTES } from "../../src/http/json_body.ts";
import { openApiDocument } from "../../src/http/openapi.ts";
import { CircuitOpenError } from "../../src/redis/breaker.ts";
import { NotConnectedError, OutcomeUnknownError } from "../../src/redis/connection.ts";
import type { StreamReport } from "../../src/stream/admin.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { bodyOfSize, harness, healthy, type Json } from "../support/http_app.ts";
import { OpenApiConformance, readAnswer, validateOpenApiDocument } from "../support/openapi.ts";

const KEY = "k3y-0123456789";
const AUTH = { "X-API-Key": KEY };
const JSON_TYPE = { "Content-Type": "application/json" };

async function servedDocument(): Promise<Json> {
  const res = await harness().request("/openapi.json");
  assertEquals(res.status, 200);
  return await res.json() as Json;
}

Deno.test("GET /openapi.json is a valid OpenAPI 3.1 document", async () => {
  const doc = await servedDocument();
  assertEquals(doc.openapi, "3.1.0");
  assertEquals(await validateOpenApiDocument(doc), []);
  assertEquals(doc, JSON.parse(JSON.stringify(openApiDocument("9.9.9"))));
});

Deno.test("the validator refuses a broken document (the check can fail)", async () => {
  const doc = structuredClone(openApiDocument("1.0.0")) as Json;
  ((doc.paths as Json)["/health/live"] as Json).get = { responses: "none" };
  assert((await validateOpenApiDocument(doc)).length > 0);
});

Deno.test("the OpenAPI document describes every route with 404 and 405", async () => {
  const doc = await servedDocument();
  assertEquals(Object.keys(doc.paths as Json).sort(), [...ROUTES].sort());
  const api = new OpenApiConformance(doc);
  for (const [route, item] of Object.entries(doc.paths as Json)) {
    for (const method of Object.keys(item as Json)) {
      const statuses = Object.keys(api.operation(method, route)?.responses as Json);
      assert(statuses.includes("404"), `${method} ${route} lacks 404`);
      assert(statuses.includes("405"), `${method} ${route} lacks 405`);
    }
  }
});

Deno.test("the OpenAPI document names duplicate, the replay count limit, 429, 503 and 504", async () => {
  const api = new OpenApiConformance(await servedDocument());
  const trigger = api.operation("POST", "/trigger-test-event")!;
  const responses = trigger.responses as Record<string, Json>;
  for (const s of ["200", "400", "401", "404", "405", "413", "415", "429", "500", "503", "504"]) {
    assert(responses[s], `trigger lacks ${s}`);
  }
  const ok = (responses["200"].content as Json)["application/json"] as Json;
  assert(((ok.schema as Json).properties as Json).duplicate, "duplicate not documented");
  assert(String(responses["504"].description).includes("outcome_unknown"));
  assert(!("Retry-After" in (responses["504"].headers as Json)), "504 has no Retry-After");
  assert("Retry-After" in (responses["429"].headers as Json));
  assert("Retry-After" in (responses["503"].headers as Json));

  const replay = api.operation("POST", "/admin/dlq/replay")!;
  const body = ((replay.requestBody as Json).content as Json)["application/json"] as Json;
  const count = ((body.schema as Json).properties as Json).count as Json;
  assertEquals([count.minimum, count.maximum, count.type], [1, 10_000, "integer"]);
  const replayStatuses = Object.keys(replay.responses as Json).sort();
  assertEquals(replayStatuses, ["200", "400", "401", "404", "405", "413", "415", "500", "503"]);
});

Deno.test("real answers of every route and status validate against the OpenAPI document", async () => {
  const doc = await servedDocument();
  const api = new OpenApiConformance(doc);
  const seen = new Set<string>();
  const problems: string[] = [];
  const check = async (method: string, route: string | undefined, res: Response) => {
    const answer = await readAnswer(res);
    // A 405 is documented on the path's own operation(s).
    const documentedAs = route && !api.operation(method, route)
      ? Object.keys((doc.paths as Json)[route] as Json).map((m) => m.toUpperCase())
      : [method];
    for (const m of documentedAs) seen.add(`${m} ${route} ${answer.status}`);
    problems.push(...api.check(method, route, answer));
    return answer.status;
  };

  // Probes, documents and metrics.
  const h = harness({ apiKey: KEY });
  await check("GET", "/health/live", await h.request("/health/live"));
  await check("GET", "/health/ready", await h.request("/health/ready"));
  await check("GET", "/health", await h.request("/health"));
  await check("GET", "/health-check", await h.request("/health-check"));
  await check("GET", "/metrics", await h.request("/metrics"));
  await check("GET", "/openapi.json", await h.request("/openapi.json"));
  h.state.health = { ...healthy(), redis: { ...healthy().redis, circuit: "half_open" } };
  assertEquals(await check("GET", "/health", await h.request("/health")), 200); // degraded
  h.state.health = {
    ...healthy(),
    redis: { connected: false, circuit: "open", lastError: "ECONNREFUSED" },
  };
  await check("GET", "/health/ready", await h.request("/health/ready"));
  await check("GET", "/health", await h.request("/health"));
  await check("GET", "/health-check", await h.request("/health-check"));
  const noMetrics = harness({ metricsEnabled: false });
  await check("GET", "/metrics", await noMetrics.request("/metrics"));
  await check("GET", undefined, await h.request("/no/such/route"));

  // Every path with a method it does not answer.
  for (const route of ROUTES) {
    const method = route === "/trigger-test-event" || route === "/admin/dlq/replay"
      ? "GET"
      : "DELETE";
    assertEquals(await check(method, route, await h.request(route, { method })), 405, route);
  }

  // The trigger.
  const t = harness({ apiKey: KEY });
  const post = "/trigger-test-event";
  await check("POST", post, await t.trigger(undefined, AUTH));
  await check("POST", post, await t.trigger("{}", { ...AUTH, "Idempotency-Key": "k-1" }));
  await check("POST", post, await t.trigger("{}", { ...AUTH, "Idempotency-Key": "k-1" }));
  await check("POST", post, await t.trigger("{bad", AUTH));
  await check("POST", post, await t.trigger('{"event":"no spaces"}', AUTH));
  await check("POST", post, await t.trigger(undefined));
  await check("POST", post, await t.trigger(bodyOfSize(MAX_JSON_BODY_BYTES + 1), AUTH));
  await check("POST", post, await t.trigger("hi", { ...AUTH, "Content-Type": "text/plain" }));
  await check("POST", post, await t.trigger(undefined, AUTH));
  assertEquals(
    await check("POST", post, await t.request(post, { method: "POST", headers: AUTH })),
    429,
  );
  t.state.available = { ok: false, retryAfterSeconds: 7 };
  await check("POST", post, await t.trigger(undefined, AUTH));
  const down = harness({ publish: () => Promise.reject(new NotConnectedError("closed")) });
  await check("POST", post, await down.trigger());
  const open = harness({ publish: () => Promise.reject(new CircuitOpenError(3000)) });
  await check("POST", post, await open.trigger());
  const broken = harness({ publish: () => Promise.reject(new Error("boom")) });
  await check("POST", post, await broken.trigger());
  const unknown = harness({
    publish: () => Promise.reject(new OutcomeUnknownError("Timed out after 10 ms")),
  });
  const res504 = await unknown.trigger();
  assertEquals(await check("POST", post, res504), 504);
  assertEquals(res504.headers.get("Retry-After"), null, "no Retry-After: it may be published");
  const slow = harness({ requestTimeoutMs: 20, publish: () => new Promise(() => {}) });
  assertEquals(await check("POST", post, await slow.trigger()), 503);

  // The admin routes.
  const a = harness({ apiKey: KEY });
  const replay = "/admin/dlq/replay";
  const replayWith = (body: BodyInit | undefined, headers: Record<string, string>) =>
    a.request(replay, { method: "POST", body, headers });
  await check("GET", "/admin/streams", await a.request("/admin/streams", { headers: AUTH }));
  await check("GET", "/admin/streams", await a.request("/admin/streams"));
  await check("POST", replay, await replayWith('{"stream":"event-stream"}', JSON_TYPE));
  await check(
    "POST",
    replay,
    await replayWith('{"stream":"event-stream","count":2}', { ...AUTH, ...JSON_TYPE }),
  );
  await check("POST", replay, await replayWith('{"stream":"nope"}', { ...AUTH, ...JSON_TYPE }));
  await check("POST", replay, await replayWith("{", { ...AUTH, ...JSON_TYPE }));
  await check(
    "POST",
    replay,
    await replayWith(bodyOfSize(MAX_JSON_BODY_BYTES + 1), { ...AUTH, ...JSON_TYPE }),
  );
  await check("POST", replay, await replayWith('{"stream":"event-stream"}', AUTH));
  const report: StreamReport = {
    stream: "event-stream",
    length: 5,
    groups: [{
      name: "svc",
      consumers: [{ name: "pod-1", pending: 1, idleMs: 20 }],
      pending: 1,
      lag: null,
      lastDeliveredId: "1-1",
    }],
    deadLetter: { stream: "event-stream:dlq", length: 0 },
  };
  const rich = harness({ admin: { report: () => Promise.resolve(report) } });
  assertEquals(await check("GET", "/admin/streams", await rich.request("/admin/streams")), 200);
  const parts = "/admin/partitions";
  assertEquals(await check("GET", parts, await rich.request(parts)), 200, "unpartitioned");
  const partitioned = harness({
    apiKey: KEY,
    admin: {
      partitionCount: 2,
      partitions: (stream: string) =>
        Promise.resolve([
          {
            key: `{${stream}:0}`,
            partition: 0,
            owner: "pod-1",
            leaseExpiresAt: "2026-01-01T00:00:10.000Z",
            pending: 3,
            lag: 0,
          },
          {
            key: `{${stream}:1}`,
            partition: 1,
            owner: null,
            leaseExpiresAt: null,
            pending: 0,
            lag: null,
          },
        ]),
    },
  });
  const partsRes = await partitioned.request(parts, { headers: AUTH });
  assertEquals(await check("GET", parts, partsRes.clone()), 200);
  const partsBody = await partsRes.json();
  assertEquals(partsBody.partitions, 2);
  assertEquals(partsBody.streams[0].partitions[0].owner, "pod-1");
  assertEquals(await check("GET", parts, await partitioned.request(parts)), 401);
  const adminDown = harness({
    admin: {
      report: () => Promise.reject(new NotConnectedError("closed")),
      replay: () => Promise.reject(new CircuitOpenError(2000)),
      partitionCount: 2,
      partitions: () => Promise.reject(new NotConnectedError("closed")),
    },
  });
  await check("GET", "/admin/streams", await adminDown.request("/admin/streams"));
  assertEquals(await check("GET", parts, await adminDown.request(parts)), 503);
  await check(
    "POST",
    replay,
    await adminDown.request(replay, {
      method: "POST",
      body: '{"stream":"event-stream"}',
      headers: JSON_TYPE,
    }),
  );
  const adminBroken = harness({
    admin: {
      report: () => Promise.reject(new Error("boom")),
      replay: () => Promise.reject(new Error("boom")),
      partitionCount: 2,
      partitions: () => Promise.reject(new Error("boom")),
    },
  });
  await check("GET", "/admin/streams", await adminBroken.request("/admin/streams"));
  assertEquals(await check("GET", parts, await adminBroken.request(parts)), 500);
  await check(
    "POST",
    replay,
    await adminBroken.request(replay, {
      method: "POST",
      body: '{"stream":"event-stream"}',
      headers: JSON_TYPE,
    }),
  );

  assertEquals(problems, []);

  // Every documented status was answered above, except the ones that cannot be made here.
  const notMadeHere = new Set<string>();
  const missing = api.documented().filter((s) => {
    if (seen.has(s) || notMadeHere.has(s)) return false;
    // 404 is documented on every operation for its shape; made above on an unknown path and
    // on /metrics when metrics are off.
    return !s.endsWith(" 404");
  });
  assertEquals(missing, []);
  assert(seen.has("GET undefined 404") && seen.has("GET /metrics 404"));
});

Deno.test("OpenApiConformance reports an answer that does not match (the check can fail)", () => {
  const api = new OpenApiConformance(openApiDocument("1.0.0"));
  const headers = new Headers({ "content-type": "application/json", "x-correlation-id": "c-1" });
  const wrongShape = api.check("GET", "/health/ready", {
    status: 200,
    headers,
    text: '{"status":"maybe"}',
  });
  assertEquals(wrongShape.length, 1);
  const undocumented = api.check("GET", "/health/live", { status: 418, headers, text: "{}" });
  assertEquals(undocumented.length, 1);
  const noCorrelation = api.check("GET", "/health/ready", {
    status: 200,
    headers: new Headers({ "content-type": "application/json" }),
    text: '{"status":"ready","timestamp":"t"}',
  });
  assertEquals(noCorrelation.length, 1);
});
