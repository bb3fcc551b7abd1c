/**
 * Unit tests of src/config.ts: `loadConfig` defaults, required variables, one
 * `ConfigError` problem per invalid variable (named), several problems at once,
 * masking of secrets in `lines()`, consumer group/name fallbacks, stream lists,
 * and the TLS file reads at the edge (`readTlsFiles`, `loadConfigAndFiles`).
 * No Redis, no network (temporary files for TLS paths).
 */
import {
  type Config,
  ConfigError,
  loadConfig,
  loadConfigAndFiles,
  readTlsFiles,
} from "../../src/config.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
  assertThrows,
} from "../support/assert.ts";

const BASE = { REDIS_HOST: "localhost", REDIS_PORT: "6380", SERVICE_NAME: "orders-svc" };

/** Loads `BASE` plus `extra` (undefined values remove a base variable). */
function load(extra: Record<string, string | undefined> = {}): Config {
  return loadConfig({ ...BASE, ...extra });
}

/** Loads and expects a ConfigError; returns it. */
function loadFails(env: Record<string, string | undefined>): ConfigError {
  return assertThrows(() => loadConfig(env), ConfigError);
}

/** Asserts that `BASE + extra` fails with exactly one problem, naming `variable`. */
function assertOnlyProblem(extra: Record<string, string | undefined>, variable: string): void {
  const err = loadFails({ ...BASE, ...extra });
  assertEquals(err.problems.map((p) => p.variable), [variable], JSON.stringify(extra));
  assertStringIncludes(err.lines()[0], `${variable}=`);
  assertStringIncludes(err.message, variable);
}

Deno.test("loadConfig() applies the documented default of every variable", () => {
  const config = load({ HOSTNAME: "pod-1" });
  const expected: Config = {
    redis: {
      host: "localhost",
      port: 6380,
      username: undefined,
      password: undefined,
      tls: { enabled: false, ca: undefined, cert: undefined, key: undefined },
      sentinel: undefined,
      cluster: undefined,
      connectTimeoutMs: 10_000,
      maxRetryAttempts: 3,
      retryDelaysMs: [5000, 15000, 30000],
      circuitFailureThreshold: 5,
      circuitResetMs: 30_000,
    },
    service: {
      name: "orders-svc",
      port: 8000,
      environment: "development",
      version: "1.0.0",
      timezone: "UTC",
    },
    stream: {
      streams: ["event-stream"],
      partitions: 1,
      partitionLeaseMs: 10_000,
      group: "orders-svc",
      consumer: "pod-1",
      startId: "$",
      batchSize: 100,
      blockMs: 5000,
      maxInFlight: 1000,
      handlerConcurrency: 16,
      claimIdleMs: 60_000,
      maxDeliveries: 5,
      dlqStream: undefined,
      dedupTtlS: 86_400,
      retentionMs: 86_400_000,
      routes: [],
      diagnosticEvents: false,
    },
    health: { lagThreshold: 10_000, pendingThreshold: 10_000 },
    log: { level: "INFO", format: "text" },
    http: {
      requestTimeoutMs: 30_000,
      apiKey: undefined,
      rateLimitPerSecond: 1,
      rateLimitBurst: 10,
      trustProxy: false,
      metricsEnabled: true,
    },
    shutdown: { timeoutMs: 30_000 },
    tracing: { enabled: false },
  };
  assertEquals(config, expected);
});

Deno.test("loadConfig() reads every variable when given", () => {
  const config = load({
    REDIS_USER: "app",
    REDIS_PW: "pw-123",
    REDIS_TLS_ENABLED: "true",
    SERVICE_PORT: "9000",
    ENVIRONMENT: "staging",
    SERVICE_VERSION: "2.3.4",
    STREAM: "a,b",
    CONSUMER_GROUP: "g1",
    CONSUMER_NAME: "c1",
    STREAM_START_ID: "0",
    BATCH_SIZE: "10",
    BLOCK_MS: "100",
    MAX_IN_FLIGHT: "50",
    HANDLER_CONCURRENCY: "4",
    CLAIM_IDLE_MS: "1000",
    MAX_DELIVERIES: "3",
    DLQ_STREAM: "dead",
    DEDUP_TTL_S: "60",
    STREAM_RETENTION_MS: "0",
    ROUTES: "order.*=>orders",
    LOG_LEVEL: "DEBUG",
    LOG_FORMAT: "json",
    CONNECTION_TIMEOUT: "500",
    MAX_RETRY_ATTEMPTS: "7",
    RETRY_DELAYS: "10, 20",
    CIRCUIT_FAILURE_THRESHOLD: "2",
    CIRCUIT_RESET_MS: "1500",
    SHUTDOWN_TIMEOUT_MS: "2000",
    REQUEST_TIMEOUT_MS: "3000",
    API_KEY: "k-123",
    RATE_LIMIT_PER_SECOND: "2.5",
    TRUST_PROXY: "true",
    METRICS_ENABLED: "false",
    TRACE_ENABLED: "true",
    TIMEZONE: "Europe/Amsterdam",
    DIAGNOSTIC_EVENTS: "true",
    HEALTH_LAG_THRESHOLD: "5",
    HEALTH_PENDING_THRESHOLD: "6",
  });
  assertEquals(config.redis.username, "app");
  assertEquals(config.redis.password, "pw-123");
  assertEquals(config.redis.tls.enabled, true);
  assertEquals(config.redis.connectTimeoutMs, 500);
  assertEquals(config.redis.maxRetryAttempts, 7);
  assertEquals(config.redis.retryDelaysMs, [10, 20]);
  assertEquals(config.redis.circuitFailureThreshold, 2);
  assertEquals(config.redis.circuitResetMs, 1500);
  assertEquals(config.service, {
    name: "orders-svc",
    port: 9000,
    environment: "staging",
    version: "2.3.4",
    timezone: "Europe/Amsterdam",
  });
  assertEquals(config.stream, {
    streams: ["a", "b"],
    partitions: 1,
    partitionLeaseMs: 10_000,
    group: "g1",
    consumer: "c1",
    startId: "0",
    batchSize: 10,
    blockMs: 100,
    maxInFlight: 50,
    handlerConcurrency: 4,
    claimIdleMs: 1000,
    maxDeliveries: 3,
    dlqStream: "dead",
    dedupTtlS: 60,
    retentionMs: 0,
    routes: [{ pattern: "order.*", target: "orders" }],
    diagnosticEvents: true,
  });
  assertEquals(config.health, { lagThreshold: 5, pendingThreshold: 6 });
  assertEquals(config.log, { level: "DEBUG", format: "json" });
  assertEquals(config.http, {
    requestTimeoutMs: 3000,
    apiKey: "k-123",
    rateLimitPerSecond: 2.5,
    rateLimitBurst: 10,
    trustProxy: true,
    metricsEnabled: false,
  });
  assertEquals(config.shutdown, { timeoutMs: 2000 });
  assertEquals(config.tracing, { enabled: true });
});

Deno.test("loadConfig() requires REDIS_HOST, REDIS_PORT and SERVICE_NAME", () => {
  const err = loadFails({});
  assertEquals(
    err.problems.map((p) => p.variable).sort(),
    ["REDIS_HOST", "REDIS_PORT", "SERVICE_NAME"],
  );
  for (const p of err.problems) assertEquals(p.message, "is required", p.variable);
  for (const line of err.lines()) assertStringIncludes(line, "(unset)");
});

Deno.test("loadConfig() treats empty strings as unset", () => {
  const err = loadFails({ REDIS_HOST: "", REDIS_PORT: "", SERVICE_NAME: "" });
  assertEquals(err.problems.length, 3);
  // An empty optional variable takes its default.
  assertEquals(load({ SERVICE_PORT: "", LOG_LEVEL: "" }).service.port, 8000);
});

Deno.test("loadConfig() rejects REDIS_PORT 0, 70000 and abc", () => {
  for (const port of ["0", "70000", "abc", "-1", "63.5"]) {
    assertOnlyProblem({ REDIS_PORT: port }, "REDIS_PORT");
  }
  assertEquals(load({ REDIS_PORT: "1" }).redis.port, 1);
  assertEquals(load({ REDIS_PORT: "65535" }).redis.port, 65535);
});

Deno.test("loadConfig() rejects SERVICE_PORT 0, 70000 and abc", () => {
  for (const port of ["0", "70000", "abc"]) {
    assertOnlyProblem({ SERVICE_PORT: port }, "SERVICE_PORT");
  }
});

Deno.test("loadConfig() rejects a REDIS_HOST that is not a host name or IP", () => {
  assertOnlyProblem({ REDIS_HOST: "bad host!" }, "REDIS_HOST");
  assertEquals(load({ REDIS_HOST: "10.0.0.1" }).redis.host, "10.0.0.1");
  assertEquals(load({ REDIS_HOST: "redis.default.svc.cluster.local" }).redis.port, 6380);
  assertEquals(load({ REDIS_HOST: "::1" }).redis.host, "::1");
});

Deno.test("loadConfig() rejects SERVICE_NAME with uppercase or over 63 characters", () => {
  assertOnlyProblem({ SERVICE_NAME: "Orders" }, "SERVICE_NAME");
  assertOnlyProblem({ SERVICE_NAME: "a".repeat(64) }, "SERVICE_NAME");
  assertOnlyProblem({ SERVICE_NAME: "-orders" }, "SERVICE_NAME");
  assertOnlyProblem({ SERVICE_NAME: "has space" }, "SERVICE_NAME");
  assertEquals(load({ SERVICE_NAME: "a".repeat(63) }).service.name, "a".repeat(63));
  assertEquals(load({ SERVICE_NAME: "a1-b_c.d" }).service.name, "a1-b_c.d");
});

Deno.test("loadConfig() rejects an unknown LOG_LEVEL and accepts any case", () => {
  assertOnlyProblem({ LOG_LEVEL: "bogus" }, "LOG_LEVEL");
  assertOnlyProblem({ LOG_LEVEL: "TRACE" }, "LOG_LEVEL");
  assertEquals(load({ LOG_LEVEL: "debug" }).log.level, "DEBUG");
  assertEquals(load({ LOG_LEVEL: "Warn" }).log.level, "WARN");
  assertEquals(load({ LOG_LEVEL: "error" }).log.level, "ERROR");
});

Deno.test("loadConfig() rejects a LOG_FORMAT other than text or json", () => {
  assertOnlyProblem({ LOG_FORMAT: "xml" }, "LOG_FORMAT");
  assertEquals(load({ LOG_FORMAT: "JSON" }).log.format, "json");
});

Deno.test("loadConfig() rejects boolean variables that are not true or false", () => {
  for (
    const v of [
      "REDIS_TLS_ENABLED",
      "TRUST_PROXY",
      "METRICS_ENABLED",
      "TRACE_ENABLED",
      "DIAGNOSTIC_EVENTS",
    ]
  ) {
    assertOnlyProblem({ [v]: "maybe" }, v);
  }
  assertEquals(load({ TRUST_PROXY: "TRUE" }).http.trustProxy, true);
  assertEquals(load({ METRICS_ENABLED: "False" }).http.metricsEnabled, false);
});

Deno.test("loadConfig() rejects integer variables out of range or not integers", () => {
  const cases: Record<string, string> = {
    BATCH_SIZE: "0",
    BLOCK_MS: "abc",
    MAX_IN_FLIGHT: "1.5",
    HANDLER_CONCURRENCY: "-3",
    CLAIM_IDLE_MS: "1",
    MAX_DELIVERIES: "0",
    DEDUP_TTL_S: "0",
    STREAM_RETENTION_MS: "-1",
    CONNECTION_TIMEOUT: "0",
    MAX_RETRY_ATTEMPTS: "0",
    CIRCUIT_FAILURE_THRESHOLD: "0",
    CIRCUIT_RESET_MS: "x",
    SHUTDOWN_TIMEOUT_MS: "99",
    REQUEST_TIMEOUT_MS: "0",
    HEALTH_LAG_THRESHOLD: "-5",
    HEALTH_PENDING_THRESHOLD: "many",
  };
  for (const [v, value] of Object.entries(cases)) assertOnlyProblem({ [v]: value }, v);
});

Deno.test("loadConfig() rejects RATE_LIMIT_PER_SECOND that is not a positive number", () => {
  for (const v of ["0", "-1", "abc", "1e3"]) {
    assertOnlyProblem({ RATE_LIMIT_PER_SECOND: v }, "RATE_LIMIT_PER_SECOND");
  }
  assertEquals(load({ RATE_LIMIT_PER_SECOND: "0.5" }).http.rateLimitPerSecond, 0.5);
});

Deno.test("loadConfig() reads RATE_LIMIT_BURST, an integer of at least 1 (default 10)", () => {
  assertEquals(load({}).http.rateLimitBurst, 10);
  assertEquals(load({ RATE_LIMIT_BURST: "3" }).http.rateLimitBurst, 3);
  for (const v of ["0", "-1", "1.5", "abc"]) {
    assertOnlyProblem({ RATE_LIMIT_BURST: v }, "RATE_LIMIT_BURST");
  }
});

Deno.test("loadConfig() parses RETRY_DELAYS as a list and rejects bad items", () => {
  assertEquals(load({ RETRY_DELAYS: "100" }).redis.retryDelaysMs, [100]);
  assertEquals(load({ RETRY_DELAYS: " 0 , 250 ,1000" }).redis.retryDelaysMs, [0, 250, 1000]);
  for (const v of ["5000,,30000", "5000,abc", "-5", "1.5", "3600001"]) {
    assertOnlyProblem({ RETRY_DELAYS: v }, "RETRY_DELAYS");
  }
});

Deno.test("loadConfig() rejects an unknown TIMEZONE", () => {
  assertOnlyProblem({ TIMEZONE: "Mars/Olympus_Mons" }, "TIMEZONE");
  assertEquals(load({ TIMEZONE: "Asia/Kolkata" }).service.timezone, "Asia/Kolkata");
});

Deno.test("loadConfig() accepts STREAM_START_ID $, 0 and an entry id only", () => {
  assertEquals(load({ STREAM_START_ID: "$" }).stream.startId, "$");
  assertEquals(load({ STREAM_START_ID: "0" }).stream.startId, "0");
  assertEquals(load({ STREAM_START_ID: "1700000000000-5" }).stream.startId, "1700000000000-5");
  for (const v of ["latest", ">", "1-2-3", "-1"]) {
    assertOnlyProblem({ STREAM_START_ID: v }, "STREAM_START_ID");
  }
});

Deno.test("loadConfig() parses ROUTES and rejects bad syntax", () => {
  assertEquals(load({ ROUTES: "order.*=>orders, *=>audit" }).stream.routes, [
    { pattern: "order.*", target: "orders" },
    { pattern: "*", target: "audit" },
  ]);
  for (const v of ["order.*", "a=>b=>c", "bad pattern!=>x", "a=>", ",,"]) {
    assertOnlyProblem({ ROUTES: v }, "ROUTES");
  }
});

Deno.test("loadConfig() rejects a ROUTES target that is a consumed stream", () => {
  const err = loadFails({ ...BASE, STREAM: "orders,payments", ROUTES: "*=>payments" });
  assertEquals(err.problems.map((p) => p.variable), ["ROUTES"]);
  assertStringIncludes(err.problems[0].message, "payments");
  // The default stream counts too.
  assertOnlyProblem({ ROUTES: "*=>event-stream" }, "ROUTES");
});

Deno.test("loadConfig() requires REDIS_SENTINEL_MASTER with REDIS_SENTINELS", () => {
  assertOnlyProblem({ REDIS_SENTINELS: "s1:26379" }, "REDIS_SENTINEL_MASTER");
  assertOnlyProblem(
    { REDIS_SENTINELS: "s1:26379,nope", REDIS_SENTINEL_MASTER: "mymaster" },
    "REDIS_SENTINELS",
  );
  assertOnlyProblem(
    { REDIS_SENTINELS: "s1:0", REDIS_SENTINEL_MASTER: "mymaster" },
    "REDIS_SENTINELS",
  );
});

Deno.test("loadConfig() with Sentinel does not require REDIS_HOST or REDIS_PORT", () => {
  const config = loadConfig({
    SERVICE_NAME: "svc",
    REDIS_SENTINELS: "s1:26379, 10.0.0.2:26380",
    REDIS_SENTINEL_MASTER: "mymaster",
  });
  assertEquals(config.redis.sentinel, {
    nodes: [{ host: "s1", port: 26379 }, { host: "10.0.0.2", port: 26380 }],
    master: "mymaster",
  });
  // REDIS_HOST / REDIS_PORT are ignored then, even when invalid.
  const ignored = loadConfig({
    SERVICE_NAME: "svc",
    REDIS_PORT: "abc",
    REDIS_SENTINELS: "s1:26379",
    REDIS_SENTINEL_MASTER: "mymaster",
  });
  assertEquals(ignored.redis.sentinel?.master, "mymaster");
});

Deno.test("loadConfig() requires REDIS_TLS_KEY with REDIS_TLS_CERT, without reading files", () => {
  assertOnlyProblem({ REDIS_TLS_CERT: "/c.pem" }, "REDIS_TLS_KEY");
  assertOnlyProblem({ REDIS_TLS_KEY: "/k.pem" }, "REDIS_TLS_CERT");
  // Pure: paths are taken as given; whether the files exist is readTlsFiles' question.
  const config = load({
    REDIS_TLS_ENABLED: "true",
    REDIS_TLS_CA: "/does/not/exist/ca.pem",
    REDIS_TLS_CERT: "/c.pem",
    REDIS_TLS_KEY: "/k.pem",
  });
  assertEquals(config.redis.tls, {
    enabled: true,
    ca: "/does/not/exist/ca.pem",
    cert: "/c.pem",
    key: "/k.pem",
  });
});

Deno.test("readTlsFiles() returns the PEM texts and names each unreadable file's variable", () => {
  const files: Record<string, string> = { "/ca.pem": "CA", "/c.pem": "CERT", "/k.pem": "KEY" };
  const read = (path: string) => {
    if (path === "/dir") throw new Deno.errors.IsADirectory("is a directory");
    if (!(path in files)) throw new Deno.errors.NotFound(path);
    return files[path];
  };
  assertEquals(
    readTlsFiles({ enabled: true, ca: "/ca.pem", cert: "/c.pem", key: "/k.pem" }, read),
    { ca: "CA", cert: "CERT", key: "KEY" },
  );
  assertEquals(readTlsFiles({ enabled: false }, read), {});
  const err = assertThrows(
    () => readTlsFiles({ enabled: true, ca: "/missing", cert: "/dir", key: "/k.pem" }, read),
    ConfigError,
  );
  assertEquals(err.problems, [
    { variable: "REDIS_TLS_CA", value: "/missing", message: "file not found or not readable" },
    { variable: "REDIS_TLS_CERT", value: "/dir", message: "is not a file" },
  ]);
});

Deno.test("loadConfigAndFiles() reports missing TLS files with the other problems, once each", () => {
  const cert = Deno.makeTempFileSync({ suffix: ".pem" });
  const key = Deno.makeTempFileSync({ suffix: ".pem" });
  const missing = `${cert}.does-not-exist`;
  const variables = (env: Record<string, string | undefined>) =>
    assertThrows(() => loadConfigAndFiles(env), ConfigError).problems.map((p) => p.variable)
      .sort();
  try {
    assertEquals(variables({ ...BASE, REDIS_TLS_CA: missing }), ["REDIS_TLS_CA"]);
    assertEquals(variables({ ...BASE, REDIS_TLS_CERT: missing, REDIS_TLS_KEY: key }), [
      "REDIS_TLS_CERT",
    ]);
    // A directory is not a file.
    assertEquals(variables({ ...BASE, REDIS_TLS_CA: Deno.cwd() }), ["REDIS_TLS_CA"]);
    // A whitespace-only path is reported by the schema, not read.
    assertEquals(variables({ ...BASE, REDIS_TLS_CA: "   " }), ["REDIS_TLS_CA"]);
    // Every problem at once: a bad variable and a missing file.
    assertEquals(variables({ ...BASE, BATCH_SIZE: "0", REDIS_TLS_CA: missing }), [
      "BATCH_SIZE",
      "REDIS_TLS_CA",
    ]);
    // A missing CERT file and the missing KEY it needs: two variables, one problem each.
    assertEquals(variables({ ...BASE, REDIS_TLS_CERT: missing }), [
      "REDIS_TLS_CERT",
      "REDIS_TLS_KEY",
    ]);
    const config = loadConfigAndFiles({
      ...BASE,
      REDIS_TLS_ENABLED: "true",
      REDIS_TLS_CA: cert,
      REDIS_TLS_CERT: cert,
      REDIS_TLS_KEY: key,
    });
    assertEquals(config.redis.tls, { enabled: true, ca: cert, cert, key });
  } finally {
    Deno.removeSync(cert);
    Deno.removeSync(key);
  }
});

Deno.test("loadConfig() reports several problems at once, one line per variable", () => {
  const err = loadFails({
    REDIS_PORT: "70000",
    SERVICE_NAME: "Bad",
    LOG_LEVEL: "loud",
    TIMEZONE: "Nowhere/Land",
    ROUTES: "broken",
    BATCH_SIZE: "0",
  });
  const variables = err.problems.map((p) => p.variable).sort();
  assertEquals(variables, [
    "BATCH_SIZE",
    "LOG_LEVEL",
    "REDIS_HOST",
    "REDIS_PORT",
    "ROUTES",
    "SERVICE_NAME",
    "TIMEZONE",
  ]);
  const lines = err.lines();
  assertEquals(lines.length, variables.length);
  assertStringIncludes(lines.join("\n"), 'REDIS_PORT="70000": must be an integer from 1 to 65535');
});

Deno.test("loadConfig() reports a whitespace-only variable once", () => {
  for (const v of ["REDIS_HOST", "ROUTES", "REDIS_SENTINELS", "REDIS_TLS_CA"]) {
    const extra: Record<string, string> = { [v]: "   " };
    if (v === "REDIS_SENTINELS") extra.REDIS_SENTINEL_MASTER = "m";
    const err = loadFails({ ...BASE, ...extra });
    assertEquals(err.problems.map((p) => p.variable), [v], `${v} reported once`);
  }
});

Deno.test("ConfigError.lines() masks the values of REDIS_PW and API_KEY", () => {
  const secretPw = "hunter2-very-secret";
  const secretKey = "api-key-top-secret";
  const err = new ConfigError([
    { variable: "REDIS_PW", value: secretPw, message: "is wrong" },
    { variable: "API_KEY", value: secretKey, message: "is wrong" },
    { variable: "REDIS_TLS_KEY", value: "/etc/keys/client.key", message: "is wrong" },
    { variable: "SERVICE_NAME", value: "Shown", message: "is wrong" },
  ]);
  const text = err.lines().join("\n") + err.message;
  assert(!text.includes(secretPw), "REDIS_PW value leaked");
  assert(!text.includes(secretKey), "API_KEY value leaked");
  assert(!text.includes("client.key"), "REDIS_TLS_KEY value leaked");
  assertEquals(err.lines()[0], "REDIS_PW=***: is wrong");
  assertEquals(err.lines()[1], "API_KEY=***: is wrong");
  assertEquals(err.lines()[3], 'SERVICE_NAME="Shown": is wrong');
});

Deno.test("loadConfig() never puts REDIS_PW or API_KEY into its error", () => {
  const secretPw = "pw-should-not-appear";
  const secretKey = "key-should-not-appear";
  const err = loadFails({ REDIS_PW: secretPw, API_KEY: secretKey, SERVICE_NAME: "X" });
  const text = [err.message, ...err.lines(), JSON.stringify(err.problems)].join("\n");
  assert(!text.includes(secretPw), "REDIS_PW value leaked");
  assert(!text.includes(secretKey), "API_KEY value leaked");
});

Deno.test("ConfigError.lines() shortens very long values", () => {
  const err = new ConfigError([{ variable: "STREAM", value: "x".repeat(500), message: "bad" }]);
  assert(err.lines()[0].length < 260, "long value not shortened");
});

Deno.test("loadConfig() defaults CONSUMER_GROUP to SERVICE_NAME", () => {
  assertEquals(load().stream.group, "orders-svc");
  assertEquals(load({ CONSUMER_GROUP: "billing" }).stream.group, "billing");
});

Deno.test("loadConfig() takes CONSUMER_NAME, else HOSTNAME, else SERVICE_NAME plus a suffix", () => {
  assertEquals(load({ CONSUMER_NAME: "c-7", HOSTNAME: "pod-1" }).stream.consumer, "c-7");
  assertEquals(load({ HOSTNAME: "pod-1" }).stream.consumer, "pod-1");
  const a = load({ HOSTNAME: undefined }).stream.consumer;
  const b = load({ HOSTNAME: undefined }).stream.consumer;
  assertMatch(a, /^orders-svc-[0-9a-f]{8}$/);
  assert(a !== b, "two instances without HOSTNAME got the same consumer name");
});

Deno.test("loadConfig() parses STREAM as a comma-separated list", () => {
  assertEquals(load({ STREAM: "orders" }).stream.streams, ["orders"]);
  assertEquals(load({ STREAM: " orders , payments ,audit" }).stream.streams, [
    "orders",
    "payments",
    "audit",
  ]);
  assertOnlyProblem({ STREAM: "a,a" }, "STREAM");
  assertOnlyProblem({ STREAM: ",," }, "STREAM");
  assertOnlyProblem({ STREAM: "has space" }, "STREAM");
});
