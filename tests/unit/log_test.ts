/**
 * Unit tests of src/log.ts: the line formats of README: Logs (`text` shape
 * and `json` fields, correlation id from `withContext`), redaction of
 * secret-looking keys (nested too, in properties and in message placeholders),
 * scrubbing of configured secret values anywhere in a line, errors without
 * stacks, and the level filter of `setupLogging`.
 */
import type { LogLevel, LogRecord } from "@logtape/logtape";
import {
  getLogger,
  lineFormatter,
  redact,
  resetLogging,
  setupLogging,
  withContext,
} from "../../src/log.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";

const TS = Date.parse("2025-06-28T23:40:13.653Z");

function record(
  message: string,
  properties: Record<string, unknown> = {},
  level: LogLevel = "info",
  category: string[] = ["app", "context"],
): LogRecord {
  return {
    category,
    level,
    message: [message],
    rawMessage: message,
    timestamp: TS,
    properties,
  };
}

/** Runs `fn` with logging configured to collect lines; always resets. */
function capture(options: Parameters<typeof setupLogging>[0], fn: () => void): string[] {
  const lines: string[] = [];
  setupLogging({ ...options, write: (l) => lines.push(l) });
  try {
    fn();
  } finally {
    resetLogging();
  }
  return lines;
}

const SECRET_KEYS = ["password", "pw", "secret", "token", "key", "authorization", "cookie"];

Deno.test("lineFormatter() text lines have the documented shape", () => {
  const format = lineFormatter({ format: "text" });
  // The spec's example uses a key named "key", which the redaction rule masks; same shape.
  assertEquals(
    format(record("message", { name: "value" }, "info")),
    '2025-06-28T23:40:13.653Z INFO  [context] message {"name":"value"}',
  );
  assertEquals(
    format(record("plain", {}, "warning", ["app", "consumer"])),
    "2025-06-28T23:40:13.653Z WARN  [consumer] plain",
  );
  assertEquals(
    format(record("x", {}, "error", ["app"])),
    "2025-06-28T23:40:13.653Z ERROR [app] x",
  );
  assertMatch(
    format(record("m", { a: 1 }, "debug")),
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z DEBUG \[context\] m \{"a":1\}$/,
  );
});

Deno.test("lineFormatter() json lines carry the documented fields", () => {
  const format = lineFormatter({ format: "json", service: "svc", environment: "prod" });
  const line = format(record("started", { port: 8000 }, "info", ["app", "http"]));
  assertEquals(JSON.parse(line), {
    timestamp: "2025-06-28T23:40:13.653Z",
    level: "INFO",
    service: "svc",
    environment: "prod",
    context: "http",
    message: "started",
    port: 8000,
  });
});

Deno.test("json log lines carry the correlationId from withContext and the properties", () => {
  const lines = capture({ format: "json", service: "svc", environment: "test" }, () => {
    withContext({ correlationId: "corr-123" }, () => {
      getLogger("http").info("Handled {path}", { path: "/x", status: 200 });
    });
    getLogger("http").info("outside");
  });
  assertEquals(lines.length, 2);
  const first = JSON.parse(lines[0]);
  assertEquals(first.level, "INFO");
  assertEquals(first.service, "svc");
  assertEquals(first.environment, "test");
  assertEquals(first.context, "http");
  assertEquals(first.message, "Handled /x");
  assertEquals(first.correlationId, "corr-123");
  assertEquals(first.path, "/x");
  assertEquals(first.status, 200);
  assertMatch(first.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assertEquals("correlationId" in JSON.parse(lines[1]), false);
});

Deno.test("lineFormatter() masks secret-looking keys, nested too, in both formats", () => {
  for (const format of ["text", "json"] as const) {
    const fmt = lineFormatter({ format });
    for (const k of SECRET_KEYS) {
      const value = `value-of-${k}-xyz`;
      const props = {
        [k]: value,
        nested: { deeper: { [k.toUpperCase()]: value }, list: [{ [`my_${k}`]: value }] },
        visible: "shown",
      };
      const line = fmt(record("msg", props));
      assert(!line.includes(value), `${format}: value of ${k} leaked: ${line}`);
      assert(line.includes("***"), `${format}: no mask for ${k}`);
      assert(line.includes("shown"), `${format}: non-secret value lost`);
    }
  }
  const json = JSON.parse(
    lineFormatter({ format: "json" })(
      record("m", { headers: { Authorization: "Bearer abc", cookie: "s=1", accept: "*/*" } }),
    ),
  );
  assertEquals(json.headers, { Authorization: "***", cookie: "***", accept: "*/*" });
});

Deno.test("lineFormatter() masks secret-looking placeholders in the message", () => {
  const lines = capture({ format: "text" }, () => {
    getLogger("auth").info("Login with {password} and {user.token}", {
      password: "hunter2-pw",
      user: { token: "tok-abc-123", name: "bob" },
    });
  });
  assertEquals(lines.length, 1);
  assert(!lines[0].includes("hunter2-pw"), lines[0]);
  assert(!lines[0].includes("tok-abc-123"), lines[0]);
  assert(lines[0].includes("Login with *** and ***"), lines[0]);
});

Deno.test("redact() copies values and masks only secret-looking keys", () => {
  const input = { a: 1, password: "p", nested: { apiKey: "k", ok: [1, 2] } };
  assertEquals(redact(input), { a: 1, password: "***", nested: { apiKey: "***", ok: [1, 2] } });
  assertEquals(input.password, "p", "the input is not modified");
  assertEquals(redact("text"), "text");
  assertEquals(redact(null), null);
});

Deno.test("lineFormatter() scrubs configured secret values anywhere in the line", () => {
  const secret = "sup3r-s3cret-pw";
  const apiKey = "the-api-key-value";
  for (const format of ["text", "json"] as const) {
    const fmt = lineFormatter({ format, secrets: [secret, apiKey, undefined] });
    const line = fmt(
      record(`connecting to redis://app:${secret}@host`, {
        url: `redis://app:${secret}@host`,
        echo: `key=${apiKey}`,
        list: [secret],
      }),
    );
    assert(!line.includes(secret), `${format}: ${line}`);
    assert(!line.includes(apiKey), `${format}: ${line}`);
    assert(line.includes("redis://app:***@host"), `${format}: ${line}`);
  }
});

Deno.test("lineFormatter() logs errors by name and message, without a stack", () => {
  const err = new Error("connection refused");
  const line = lineFormatter({ format: "json" })(record("failed", { error: err }));
  const parsed = JSON.parse(line);
  assertEquals(parsed.error, { name: "Error", message: "connection refused" });
  assert(!line.includes("at "), "stack trace in log line");
});

Deno.test("setupLogging({level: WARN}) drops INFO and DEBUG lines", () => {
  const lines = capture({ level: "WARN" }, () => {
    const log = getLogger("x");
    log.debug("d");
    log.info("i");
    log.warn("w");
    log.error("e");
  });
  assertEquals(lines.length, 2);
  assertMatch(lines[0], / WARN {2}\[x\] w$/);
  assertMatch(lines[1], / ERROR \[x\] e$/);
});

Deno.test("setupLogging() defaults to level INFO", () => {
  const lines = capture({}, () => {
    getLogger("x").debug("d");
    getLogger("x").info("i");
  });
  assertEquals(lines.length, 1);
  assertMatch(lines[0], / INFO {2}\[x\] i$/);
});
