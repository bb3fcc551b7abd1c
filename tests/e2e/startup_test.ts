/**
 * End-to-end tests of start-up (README: Configuration; Start-up, shutdown and exit codes), with the real `main.ts` process: exit 78
 * naming each bad variable (secrets never printed, nothing logged or listening before the
 * configuration is valid), exit 1 after the configured attempts when Redis never answers (live
 * 200 and ready 503 meanwhile), exit 0 on SIGINT during those attempts, and a normal start
 * against a real redis-server: the probes, the /health report, /metrics and /openapi.json.
 *
 * @module
 */

import { assert, assertEquals, assertMatch, assertStringIncludes } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { exitWithin, runService, serviceEnvFor, startService } from "../support/service.ts";
import { freePort, waitFor } from "../support/wait.ts";

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * A configuration that is valid except for what `overrides` changes (undefined removes a
 * variable). One attempt only, so a wrongly accepted configuration ends quickly with exit 1.
 */
function configEnv(overrides: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string | undefined> = {
    REDIS_HOST: "127.0.0.1",
    REDIS_PORT: String(freePort()),
    SERVICE_NAME: "config-e2e",
    MAX_RETRY_ATTEMPTS: "1",
    CONNECTION_TIMEOUT: "500",
    ...overrides,
  };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/** The problem lines under "Invalid configuration:" on stderr. */
function problemLines(stderr: string): string[] {
  const lines = stderr.split("\n");
  const start = lines.findIndex((l) => l.startsWith("Invalid configuration:"));
  assert(start >= 0, `stderr has no "Invalid configuration:" header:\n${stderr}`);
  return lines.slice(start + 1).map((l) => l.trim()).filter((l) => l.length > 0);
}

const BAD_VARIABLES: [string, Record<string, string | undefined>][] = [
  ["REDIS_HOST", { REDIS_HOST: undefined }],
  ["REDIS_PORT", { REDIS_PORT: "abc" }],
  ["SERVICE_NAME", { SERVICE_NAME: "Bad_Name" }],
  ["LOG_LEVEL", { LOG_LEVEL: "LOUD" }],
  ["TIMEZONE", { TIMEZONE: "Mars/Base" }],
];

for (const [variable, overrides] of BAD_VARIABLES) {
  Deno.test(`main.ts exits 78 naming ${variable} when only ${variable} is invalid`, async () => {
    // The HTTP port is held here: a service that bound it before validating would fail with
    // "address in use" (exit 1), not 78.
    using held = Deno.listen({ hostname: "0.0.0.0", port: freePort() });
    const port = (held.addr as Deno.NetAddr).port;
    const run = await runService(configEnv({ ...overrides, SERVICE_PORT: String(port) }));
    assertEquals(run.code, 78, `exit code; stderr:\n${run.stderr}\nstdout:\n${run.stdout}`);
    const problems = problemLines(run.stderr);
    assertEquals(problems.length, 1, `one problem line expected:\n${run.stderr}`);
    assert(problems[0].startsWith(`${variable}=`), `line names ${variable}: ${problems[0]}`);
    assertEquals(run.stdout.trim(), "", "nothing is logged before the configuration is valid");
  });
}

Deno.test("main.ts exits 78 naming every bad variable at once, never printing REDIS_PW", async () => {
  const run = await runService(configEnv({
    REDIS_HOST: undefined,
    REDIS_PORT: "abc",
    SERVICE_NAME: "Bad_Name",
    LOG_LEVEL: "LOUD",
    TIMEZONE: "Mars/Base",
    REDIS_PW: "sup3rs3cret",
  }));
  const all = `${run.stdout}\n${run.stderr}`;
  assertEquals(run.code, 78, `exit code; output:\n${all}`);
  const named = problemLines(run.stderr).map((l) => l.split("=")[0]).sort();
  assertEquals(named, ["LOG_LEVEL", "REDIS_HOST", "REDIS_PORT", "SERVICE_NAME", "TIMEZONE"]);
  assert(!all.includes("sup3rs3cret"), `the password leaked:\n${all}`);
});

Deno.test("main.ts exits 78 in cluster mode for a stream without a hash tag, suggesting one", async () => {
  const run = await runService(configEnv({
    REDIS_HOST: undefined,
    REDIS_PORT: undefined,
    REDIS_CLUSTER_NODES: "127.0.0.1:7000,127.0.0.1:7001",
    STREAM: "orders",
  }));
  assertEquals(run.code, 78, `exit code; stderr:\n${run.stderr}`);
  const named = problemLines(run.stderr).map((l) => l.split(/[:=]/)[0]);
  assertEquals(named, ["STREAM"]);
  assertStringIncludes(run.stderr, '"{orders}"');
  assertEquals(run.stdout.trim(), "", "nothing is logged before the configuration is valid");
});

Deno.test("main.ts never prints REDIS_PW when another variable is invalid", async () => {
  const run = await runService(configEnv({ SERVICE_NAME: "Bad_Name", REDIS_PW: "sup3rs3cret" }));
  const all = `${run.stdout}\n${run.stderr}`;
  assertEquals(run.code, 78, `exit code; output:\n${all}`);
  assertStringIncludes(run.stderr, "SERVICE_NAME=");
  assert(!all.includes("sup3rs3cret"), `the password leaked:\n${all}`);
});

Deno.test("main.ts exits 1 after MAX_RETRY_ATTEMPTS when Redis never answers", async () => {
  const run = await runService({
    REDIS_HOST: "127.0.0.1",
    REDIS_PORT: String(freePort()), // nothing listens there
    SERVICE_NAME: "no-redis-e2e",
    CONSUMER_NAME: "no-redis-1",
    MAX_RETRY_ATTEMPTS: "2",
    RETRY_DELAYS: "100",
    CONNECTION_TIMEOUT: "500",
    LOG_LEVEL: "INFO",
  });
  const all = `${run.stdout}\n${run.stderr}`;
  assertEquals(run.code, 1, `exit code; output:\n${all}`);
  assertMatch(all, /Connection attempt 1\/2 failed/);
  assertMatch(all, /Connection attempt 2\/2 failed/);
  assert(!/Connection attempt 3\//.test(all), `no third attempt expected:\n${all}`);
  assertStringIncludes(all, "Giving up on Redis");
});

Deno.test("main.ts answers live 200 and ready 503 while it retries Redis, then exits 1", async () => {
  await using cleanup = new Cleanup();
  // The service listens before its first attempt and retries for 6 s (3 attempts 3 s apart).
  // Once it listens, the checks below take at most 3 s (1 s per request): they run while it
  // retries however slow the machine, and a late one fails by its own timeout instead.
  const svc = cleanup.use(
    await startService({
      waitReady: false,
      env: {
        REDIS_HOST: "127.0.0.1",
        REDIS_PORT: String(freePort()),
        SERVICE_NAME: "no-redis-e2e",
        CONSUMER_NAME: "no-redis-2",
        MAX_RETRY_ATTEMPTS: "3",
        RETRY_DELAYS: "3000",
        CONNECTION_TIMEOUT: "500",
        LOG_LEVEL: "INFO",
      },
    }),
  );
  const live = await waitFor(async () => {
    try {
      const res = await svc.request("/health/live", { timeoutMs: 1_000 });
      return res.status === 200 ? res : undefined;
    } catch {
      return undefined; // not listening yet
    }
  }, { timeoutMs: 15_000, message: "GET /health/live to answer 200 while Redis is retried" });
  assertEquals(live.text, "OK");
  const ready = await svc.request("/health/ready", { timeoutMs: 1_000 });
  assert(svc.status === undefined, "the service was still retrying when ready was asked");
  assertEquals(ready.status, 503, ready.text);
  const body = ready.json as Record<string, unknown>;
  assertEquals(body.status, "not_ready");
  assertEquals(body.reason, "redis_unavailable");
  assertEquals((await svc.request("/health-check", { timeoutMs: 1_000 })).status, 503);
  const status = await exitWithin(svc, 30_000);
  assertEquals(status.code, 1, svc.output());
  assertMatch(svc.output(), /Connection attempt 3\/3 failed/);
});

Deno.test("main.ts starts against Redis and serves the probes, /health, /metrics and /openapi.json", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const svc = cleanup.use(
    await startService({
      env: serviceEnvFor(redis, "startup-e2e", "startup-1", {
        SERVICE_VERSION: "2.3.4",
        ENVIRONMENT: "e2e",
        STREAM: "startup-events",
      }),
    }),
  );

  const ready = await svc.request("/health/ready");
  assertEquals(ready.status, 200);
  const readyBody = ready.json as Record<string, unknown>;
  assertEquals(Object.keys(readyBody).sort(), ["status", "timestamp"]);
  assertEquals(readyBody.status, "ready");
  assertMatch(String(readyBody.timestamp), ISO_RE);

  const live = await svc.request("/health/live");
  assertEquals([live.status, live.text], [200, "OK"]);
  assertStringIncludes(live.headers.get("content-type") ?? "", "text/plain");

  const legacy = await svc.request("/health-check");
  assertEquals([legacy.status, legacy.text], [200, "ok"]);

  const health = await svc.request("/health");
  assertEquals(health.status, 200, health.text);
  const h = health.json as {
    status: string;
    timestamp: string;
    service: Record<string, unknown>;
    checks: { redis: Record<string, unknown>; eventStream: Record<string, unknown> };
  };
  assertEquals(h.status, "healthy");
  assertMatch(h.timestamp, ISO_RE);
  assertEquals(h.service.name, "startup-e2e");
  assertEquals(h.service.version, "2.3.4");
  assertEquals(h.service.environment, "e2e");
  assert(typeof h.service.uptime === "number" && h.service.uptime >= 0, "uptime in seconds");
  assertEquals(h.checks.redis.status, "healthy");
  assertEquals(h.checks.redis.circuit, "closed");
  assert(typeof h.checks.redis.latency === "number", `latency: ${h.checks.redis.latency}`);
  assertMatch(String(h.checks.redis.lastCheck), ISO_RE);
  const es = h.checks.eventStream;
  assertEquals(es.status, "healthy");
  assertEquals(es.consumerActive, true);
  assertEquals(es.stream, "startup-events");
  assertEquals(es.group, "startup-e2e");
  assertEquals(es.consumer, "startup-1");
  assertEquals(es.pending, 0);
  assert("lastMessage" in es && "lag" in es, `eventStream fields: ${JSON.stringify(es)}`);

  const metrics = await svc.request("/metrics");
  assertEquals(metrics.status, 200);
  assertStringIncludes(metrics.headers.get("content-type") ?? "", "text/plain");
  assertMatch(metrics.text, /^redis_up 1$/m);
  assertMatch(metrics.text, /^# TYPE http_requests_total counter$/m);

  const openapi = await svc.request("/openapi.json");
  assertEquals(openapi.status, 200);
  const doc = openapi.json as { openapi: string; info: { version: string }; paths: object };
  assertMatch(doc.openapi, /^3\./);
  assertEquals(doc.info.version, "2.3.4");
  for (const path of ["/health/live", "/health/ready", "/health", "/trigger-test-event"]) {
    assert(path in doc.paths, `openapi.json documents ${path}`);
  }

  // The group was created at start (MKSTREAM) by the real process.
  const client = await redis.client();
  const groups = await client.sendCommand(["XINFO", "GROUPS", "startup-events"]) as unknown[][];
  assertEquals(groups.length, 1);
  assertEquals(String(groups[0][1]), "startup-e2e");
});

Deno.test("main.ts exits 0 on SIGINT while it is still retrying Redis", async () => {
  await using cleanup = new Cleanup();
  const svc = cleanup.use(
    await startService({
      waitReady: false,
      env: {
        REDIS_HOST: "127.0.0.1",
        REDIS_PORT: String(freePort()),
        SERVICE_NAME: "no-redis-e2e",
        CONSUMER_NAME: "no-redis-3",
        MAX_RETRY_ATTEMPTS: "100",
        RETRY_DELAYS: "2000",
        CONNECTION_TIMEOUT: "500",
        LOG_LEVEL: "INFO",
      },
    }),
  );
  await svc.waitForLine("Retrying in", 15_000);
  svc.signal("SIGINT");
  // 100 attempts 2 s apart would take minutes: an exit within 10 s is the signal's doing.
  const status = await exitWithin(svc, 10_000);
  assertEquals(status.code, 0, svc.output());
  assertMatch(svc.output(), /Shutdown complete in \d+ ms \(SIGINT\)/);
});
