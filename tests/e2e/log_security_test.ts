/**
 * End-to-end tests of structured logs and HTTP security (README: Logs and Security) with real
 * service processes on a password-protected redis-server: with `LOG_FORMAT=json` every stdout
 * line is a JSON object with the contract's fields; the correlation id of a trigger request
 * travels into the entry's headers and into the consumer's log lines for that entry; the API key
 * and the Redis password never appear in any output; a 401 does not echo keys; and rate limiting
 * keys on `X-Forwarded-For` only with `TRUST_PROXY=true`.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { jsonLines, type ServiceProcess, startService } from "../support/service.ts";
import { waitFor } from "../support/wait.ts";

const API_KEY = "k3y-v4lue-123456";
const REDIS_PW = "r3d1s-pa55-word";
const WRONG_KEY = "wr0ng-k3y-guess-999";
const ENVIRONMENT = "logsec-env";
const LEVELS = new Set(["DEBUG", "INFO", "WARN", "ERROR"]);

function trigger(
  svc: ServiceProcess,
  headers: Record<string, string>,
): ReturnType<ServiceProcess["request"]> {
  return svc.request("/trigger-test-event", { method: "POST", headers });
}

/** Every stdout line is a JSON object with the fields of README: Logs. */
function assertJsonLogLines(svc: ServiceProcess, service: string): Record<string, unknown>[] {
  const lines = svc.lines.filter((l) => l.trim() !== "");
  assert(lines.length > 0, "no output on stdout");
  for (const line of lines) {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line);
    } catch {
      throw new Error(`stdout line is not JSON: ${line}`);
    }
    assert(entry !== null && typeof entry === "object" && !Array.isArray(entry), line);
    assertMatch(String(entry.timestamp), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert(LEVELS.has(String(entry.level)), `level of ${line}`);
    assertEquals(entry.service, service, `service of ${line}`);
    assertEquals(entry.environment, ENVIRONMENT, `environment of ${line}`);
    assert(typeof entry.context === "string" && entry.context !== "", `context of ${line}`);
    assert(typeof entry.message === "string", `message of ${line}`);
  }
  return jsonLines(lines);
}

function assertNoSecrets(text: string, where: string): void {
  for (const secret of [API_KEY, REDIS_PW, WRONG_KEY]) {
    assert(!text.includes(secret), `"${secret}" appears in ${where}`);
  }
}

Deno.test("service logs JSON lines carrying the request's correlation id, never a secret, and rate limits by X-Forwarded-For only behind a trusted proxy", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis({ args: ["--requirepass", REDIS_PW] }));
  const base = {
    ...redis.env(),
    REDIS_PW,
    API_KEY,
    LOG_FORMAT: "json",
    LOG_LEVEL: "DEBUG",
    ENVIRONMENT,
    // One token per client, refilled after 100 s: the second request of a client is a 429.
    RATE_LIMIT_PER_SECOND: "0.01",
    RATE_LIMIT_BURST: "1",
  };
  const [trusting, direct] = await Promise.all([
    startService({
      env: { ...base, SERVICE_NAME: "logsec-a", STREAM: "logsec-a", TRUST_PROXY: "true" },
    }),
    startService({
      env: { ...base, SERVICE_NAME: "logsec-b", STREAM: "logsec-b", TRUST_PROXY: "false" },
    }),
  ]);
  cleanup.use(trusting);
  cleanup.use(direct);
  const bodies: string[] = [];

  // 401: no key, a wrong key in either header; the body echoes neither key.
  const unauthorized: Record<string, string>[] = [
    {},
    { "X-API-Key": WRONG_KEY },
    { Authorization: `Bearer ${WRONG_KEY}` },
  ];
  for (const headers of unauthorized) {
    const res = await trigger(trusting, headers);
    assertEquals(res.status, 401, res.text);
    assertEquals((res.json as { error?: string }).error, "unauthorized");
    bodies.push(res.text, [...res.headers].join("\n"));
  }

  // The correlation id of the request comes back and goes into the entry.
  const auth = { Authorization: `Bearer ${API_KEY}` };
  const first = await trigger(trusting, {
    ...auth,
    "X-Correlation-ID": "corr-xyz-1",
    "X-Forwarded-For": "10.0.0.1",
  });
  assertEquals(first.status, 200, first.text);
  assertEquals(first.headers.get("x-correlation-id"), "corr-xyz-1");
  const { id, correlationId } = first.json as { id: string; correlationId: string };
  assertEquals(correlationId, "corr-xyz-1");
  const client = await redis.client({ password: REDIS_PW });
  const [entry] = await client.xRange("logsec-a", id, id);
  assertEquals(JSON.parse(entry.message.headers).correlationId, "corr-xyz-1");

  // TRUST_PROXY=true: each X-Forwarded-For client has its own bucket.
  const other = await trigger(trusting, { ...auth, "X-Forwarded-For": "10.0.0.2, 172.16.0.9" });
  assertEquals(other.status, 200, other.text);
  const again = await trigger(trusting, { ...auth, "X-Forwarded-For": "10.0.0.1" });
  assertEquals(again.status, 429, again.text);
  assertMatch(again.headers.get("retry-after") ?? "", /^\d+$/);

  // TRUST_PROXY=false: the header is ignored, both requests come from 127.0.0.1.
  const directFirst = await trigger(direct, { ...auth, "X-Forwarded-For": "10.0.0.1" });
  assertEquals(directFirst.status, 200, directFirst.text);
  const directSecond = await trigger(direct, { ...auth, "X-Forwarded-For": "10.0.0.2" });
  assertEquals(directSecond.status, 429, directSecond.text);
  assertMatch(directSecond.headers.get("retry-after") ?? "", /^\d+$/);
  for (const res of [first, other, again, directFirst, directSecond]) {
    bodies.push(res.text, [...res.headers].join("\n"));
  }

  // The consumer's lines about the entry carry the request's correlation id.
  const consumerLines = () =>
    jsonLines(trusting.lines).filter((l) =>
      l.context === "consumer" && (l.id === id || String(l.message).includes(id))
    );
  await waitFor(() => consumerLines().some((l) => l.message === `Received manual_test ${id}`), {
    message: `the consumer to log the handling of ${id}`,
  });

  assertEquals((await trusting.stop()).code, 0);
  assertEquals((await direct.stop()).code, 0);

  const handled = consumerLines();
  assert(handled.length > 0);
  for (const line of handled) {
    assertEquals(line.correlationId, "corr-xyz-1", `correlationId of ${JSON.stringify(line)}`);
  }
  assertJsonLogLines(trusting, "logsec-a");
  assertJsonLogLines(direct, "logsec-b");
  assertNoSecrets(trusting.output(), "the output of the TRUST_PROXY=true service");
  assertNoSecrets(direct.output(), "the output of the TRUST_PROXY=false service");
  assertNoSecrets(bodies.join("\n"), "an HTTP response");
});
