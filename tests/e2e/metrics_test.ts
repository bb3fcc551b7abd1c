/**
 * End-to-end test of `/metrics` (README: Metrics) against a real service process and a real
 * redis-server: after a known workload (triggers, valid entries, malformed entries, failing
 * diagnostic entries that are retried and dead-lettered) the exposition passes a strict
 * Prometheus text-format parser, every family of the contract is there with its type, the
 * counters match the workload exactly, route labels are patterns (never raw paths), the process
 * metrics work under Deno, and `METRICS_ENABLED=false` turns `/metrics` into a 404.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import {
  findSamples,
  type MetricFamily,
  type MetricType,
  parsePrometheusText,
  sampleValue,
  sumSamples,
} from "../support/prom_parser.ts";
import { startRedis } from "../support/redis_server.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { waitFor } from "../support/wait.ts";

const STREAM = "metrics-stream";
const GROUP = "metrics-svc";
const TRIGGERS = 5;

/** The route patterns of README: HTTP API; anything else must be labelled `other`. */
const ROUTE_PATTERNS = new Set([
  "/health/live",
  "/health/ready",
  "/health",
  "/health-check",
  "/metrics",
  "/openapi.json",
  "/trigger-test-event",
  "/admin/streams",
  "/admin/partitions",
  "/admin/dlq/replay",
  "other",
]);

/** Families of README: Metrics and their types. */
const CONTRACT_FAMILIES: [string, MetricType, string[]][] = [
  ["http_requests_total", "counter", ["method", "route", "status"]],
  ["http_request_duration_seconds", "histogram", ["route"]],
  ["redis_up", "gauge", []],
  ["redis_command_duration_seconds", "histogram", []],
  ["redis_circuit_state", "gauge", []],
  ["stream_messages_consumed_total", "counter", ["stream", "event", "outcome"]],
  ["stream_processing_duration_seconds", "histogram", []],
  ["stream_consumer_lag", "gauge", ["stream", "group"]],
  ["stream_pending_messages", "gauge", ["stream", "group"]],
  ["stream_messages_published_total", "counter", ["stream"]],
  ["stream_in_flight", "gauge", []],
];

async function scrape(svc: ServiceProcess): Promise<Map<string, MetricFamily>> {
  const res = await svc.request("/metrics");
  assertEquals(res.status, 200, `GET /metrics answered ${res.status}: ${res.text}`);
  assertMatch(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(res.text);
}

function consumed(families: Map<string, MetricFamily>, outcome: string, event?: string): number {
  const match: Record<string, string> = { stream: STREAM, outcome };
  if (event !== undefined) match.event = event;
  return sumSamples(families, "stream_messages_consumed_total", match);
}

Deno.test("GET /metrics reports the workload exactly, in strict Prometheus text format", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const env = {
    ...redis.env(),
    SERVICE_NAME: GROUP,
    STREAM,
    DIAGNOSTIC_EVENTS: "true",
    MAX_DELIVERIES: "2",
    RATE_LIMIT_PER_SECOND: "1000",
    LOG_LEVEL: "INFO",
  };
  // The second service only proves METRICS_ENABLED=false; start both at once.
  const [svc, disabled] = await Promise.all([
    startService({ env }),
    startService({
      env: { ...env, SERVICE_NAME: "metrics-off", STREAM: "metrics-off", METRICS_ENABLED: "false" },
    }),
  ]);
  cleanup.use(svc);
  cleanup.use(disabled);
  const client = await redis.client();

  // Workload. Triggers: acked on first delivery, published by the service.
  for (let i = 0; i < TRIGGERS; i++) {
    const res = await svc.request("/trigger-test-event", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ event: "metrics.trigger", data: { i } }),
    });
    assertEquals(res.status, 200, res.text);
  }
  const xadd = (fields: Record<string, string>) =>
    client.sendCommand(["XADD", STREAM, "*", ...Object.entries(fields).flat()]);
  const headers = JSON.stringify({ correlationId: "metrics-test" });
  for (let i = 0; i < 4; i++) {
    await xadd({ event: "order.created", aggregateId: `o-${i}`, payload: `{"i":${i}}`, headers });
  }
  // Malformed: dead-lettered at once, labelled with their event (or "unknown" without one).
  await xadd({ event: "bad.payload", aggregateId: "b-1", payload: "not json", headers });
  await xadd({ aggregateId: "b-2", payload: "{}", headers });
  // Always failing: delivery 1 retried, delivery 2 (MAX_DELIVERIES) dead-lettered.
  for (let i = 0; i < 2; i++) {
    await xadd({ event: "diagnostic.fail", aggregateId: `f-${i}`, payload: "{}", headers });
  }
  // Fails once: retried, then acked.
  await xadd({
    event: "diagnostic.fail",
    aggregateId: "f-once",
    payload: '{"failTimes":1}',
    headers,
  });

  // Two unknown paths: counted under the route "other", never under their raw path.
  for (const path of ["/nope-123", "/nope-456"]) {
    const res = await svc.request(path);
    assertEquals(res.status, 404);
  }

  // The group gauges come from a periodic XINFO reading: the dead-letter length read with them
  // proves that reading was taken after the workload, so pending and lag 0 are not stale zeros.
  const families = await waitFor(async () => {
    const f = await scrape(svc);
    const settled = consumed(f, "acked") === TRIGGERS + 4 + 1 &&
      consumed(f, "dead_lettered") === 4 &&
      consumed(f, "retried") === 3 &&
      sampleValue(f, "stream_dead_letter_length", { stream: STREAM }) === 4 &&
      sampleValue(f, "stream_pending_messages", { stream: STREAM, group: GROUP }) === 0 &&
      sampleValue(f, "stream_consumer_lag", { stream: STREAM, group: GROUP }) === 0 &&
      sampleValue(f, "stream_in_flight") === 0;
    return settled ? f : undefined;
  }, { timeoutMs: 15_000, intervalMs: 100, message: "the workload to show in /metrics" });

  // Every family of the contract, with its type and labels.
  for (const [name, type, labels] of CONTRACT_FAMILIES) {
    const family = families.get(name);
    assert(family, `family ${name} is missing`);
    assertEquals(family.type, type, `type of ${name}`);
    assert(family.help && family.help.length > 0, `${name} has no HELP`);
    assert(family.samples.length > 0, `${name} has no samples`);
    for (const s of family.samples) {
      const own = Object.keys(s.labels).filter((l) => l !== "le").sort();
      assertEquals(own, [...labels].sort(), `labels of ${s.name} (line ${s.line})`);
    }
  }

  // Consumption outcomes, per event type.
  assertEquals(consumed(families, "acked", "metrics.trigger"), TRIGGERS);
  assertEquals(consumed(families, "acked", "order.created"), 4);
  assertEquals(consumed(families, "acked", "diagnostic.fail"), 1);
  assertEquals(consumed(families, "retried", "diagnostic.fail"), 3);
  assertEquals(consumed(families, "dead_lettered", "diagnostic.fail"), 2);
  assertEquals(consumed(families, "dead_lettered", "bad.payload"), 1);
  assertEquals(consumed(families, "dead_lettered", "unknown"), 1);
  assertEquals(consumed(families, "duplicate"), 0);
  // Handler runs: triggers, orders, 2 × 2 always-failing deliveries, 2 for the fail-once entry.
  assertEquals(
    sampleValue(families, "stream_processing_duration_seconds_count"),
    TRIGGERS + 4 + 4 + 2,
  );
  assertEquals(
    sampleValue(families, "stream_messages_published_total", { stream: STREAM }),
    TRIGGERS,
  );
  assertEquals(await client.xLen(`${STREAM}:dlq`), 4);

  // Redis.
  assertEquals(sampleValue(families, "redis_up"), 1);
  assertEquals(sampleValue(families, "redis_circuit_state"), 0);
  assert((sampleValue(families, "redis_command_duration_seconds_count") ?? 0) > 0);

  // HTTP: route patterns only.
  assertEquals(
    sampleValue(families, "http_requests_total", {
      method: "POST",
      route: "/trigger-test-event",
      status: "200",
    }),
    TRIGGERS,
  );
  assertEquals(
    sampleValue(families, "http_request_duration_seconds_count", { route: "/trigger-test-event" }),
    TRIGGERS,
  );
  assertEquals(
    sampleValue(families, "http_requests_total", { method: "GET", route: "other", status: "404" }),
    2,
  );
  for (const name of ["http_requests_total", "http_request_duration_seconds"]) {
    for (const s of families.get(name)!.samples) {
      assert(ROUTE_PATTERNS.has(s.labels.route), `${s.name} has raw route "${s.labels.route}"`);
    }
  }

  // Process metrics (prom-client's defaults, under Deno).
  const cpu = sampleValue(families, "process_cpu_seconds_total") ??
    sampleValue(families, "process_cpu_user_seconds_total");
  assert(cpu !== undefined && cpu > 0, `process CPU seconds: ${cpu}`);
  assertEquals(families.get("process_resident_memory_bytes")?.type, "gauge");
  assert((sampleValue(families, "process_resident_memory_bytes") ?? 0) > 0, "resident memory");
  assert((sampleValue(families, "nodejs_heap_size_used_bytes") ?? 0) > 0, "heap used");
  // Process metrics that cannot be read under the service's permissions must be absent, not 0.
  for (const name of ["process_virtual_memory_bytes", "process_heap_bytes", "process_open_fds"]) {
    const value = sampleValue(families, name);
    assert(value === undefined || value > 0, `${name} is ${value}`);
  }
  assertEquals(families.get("nodejs_eventloop_lag_seconds")?.type, "gauge");
  // The lag probe reports on the scrape after the one that started it: it must measure something.
  await waitFor(async () => {
    const lag = sampleValue(await scrape(svc), "nodejs_eventloop_lag_seconds");
    return lag !== undefined && Number.isFinite(lag) && lag > 0;
  }, { timeoutMs: 5_000, intervalMs: 50, message: "nodejs_eventloop_lag_seconds above 0" });
  assertEquals(findSamples(families, "process_resident_memory_bytes").length, 1);

  // METRICS_ENABLED=false: no /metrics, the rest still serves.
  const off = await disabled.request("/metrics");
  assertEquals(off.status, 404);
  assertEquals((off.json as { error?: string } | undefined)?.error, "not_found");
  assertEquals((await disabled.request("/health/ready")).status, 200);

  for (const s of [svc, disabled]) assertEquals((await s.stop()).code, 0);
});
