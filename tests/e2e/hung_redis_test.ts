/**
 * End-to-end test of a hung Redis (README "Resilience"): a real redis-server frozen with
 * SIGSTOP keeps its sockets open and answers nothing, so only deadlines the service keeps
 * itself can notice it. Mid-drain, with `ROUTES` forwarding: readiness turns 503
 * `redis_unavailable`, /health `unhealthy`, a WARN line says why; after SIGCONT the service is
 * ready again by itself and every entry is forwarded exactly once (nothing lost, nothing twice).
 *
 * @module
 */

import { assertEquals, assertMatch } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { waitFor } from "../support/wait.ts";
import { isDrained, preload, readStream, xlen } from "../support/streams.ts";
import { assertExactlyOnce } from "../support/coverage.ts";

const STREAM = "hung-events";
const GROUP = "hung";
const OUT = "hung-out";

Deno.test("a Redis stopped with SIGSTOP turns readiness 503 and the service resumes after SIGCONT, losing nothing", async () => {
  const N = 5_000;
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  cleanup.add(() => redis.resume()); // runs before the server's stop, should an assertion fail
  const client = await redis.client();
  const ids = await preload(client, STREAM, N);
  const svc = cleanup.use(
    await startService({
      env: {
        ...redis.env(),
        SERVICE_NAME: "hung-svc",
        CONSUMER_NAME: "hung-1",
        STREAM,
        CONSUMER_GROUP: GROUP,
        STREAM_START_ID: "0",
        ROUTES: `*=>${OUT}`,
        CONNECTION_TIMEOUT: "2000",
        LOG_LEVEL: "INFO",
      },
    }),
  );
  await waitFor(async () => await xlen(client, OUT) >= 500, {
    timeoutMs: 30_000,
    intervalMs: 10,
    message: `${OUT} to reach 500 entries`,
  });
  const mark = svc.mark();
  await redis.pause();

  // Noticed by the service's own deadlines: no socket closes, no error arrives.
  const ready = await waitFor(async () => {
    const res = await svc.request("/health/ready", { timeoutMs: 1_000 });
    return res.status === 503 ? res : undefined;
  }, { timeoutMs: 15_000, message: "/health/ready to answer 503 while Redis is stopped" });
  assertEquals((ready.json as { reason?: string }).reason, "redis_unavailable", ready.text);
  const health = await svc.request("/health", { timeoutMs: 1_000 });
  assertEquals(health.status, 503, health.text);
  assertEquals((health.json as { status: string }).status, "unhealthy");
  const warning = await svc.waitForLine(/WARN/, 10_000, mark);
  assertMatch(warning, /Timed out after|Reconnect/);
  assertEquals(svc.status, undefined, "a hung Redis never exits the process");

  await redis.resume();
  await svc.waitReady(30_000);
  await waitFor(() => isDrained(client, STREAM, GROUP), {
    timeoutMs: 60_000,
    intervalMs: 100,
    message: "pending 0 and lag 0 after Redis resumed",
  });
  await waitFor(async () => await xlen(client, OUT) >= N, {
    timeoutMs: 30_000,
    message: `${OUT} to hold ${N} entries`,
  });
  assertExactlyOnce(await readStream(client, OUT), ids, OUT);
  assertEquals(await xlen(client, `${STREAM}:dlq`), 0, "nothing dead-lettered");
});

Deno.test("a trigger sent to a Redis stopped with SIGSTOP answers 504 outcome_unknown; a retry with its Idempotency-Key publishes once", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  cleanup.add(() => redis.resume());
  const client = await redis.client();
  const svc = cleanup.use(
    await startService({
      env: {
        ...redis.env(),
        SERVICE_NAME: "hung-trigger",
        STREAM,
        CONSUMER_GROUP: GROUP,
        CONNECTION_TIMEOUT: "2000",
        LOG_LEVEL: "INFO",
      },
    }),
  );
  const post = () =>
    svc.request("/trigger-test-event", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": "hung-key-1" },
      body: JSON.stringify({ event: "order.created", aggregateId: "o-1" }),
      timeoutMs: 20_000,
    });
  await redis.pause();
  // Sent before the service could notice: it reaches the socket and no answer comes.
  const first = await post();
  assertEquals(first.status, 504, first.text);
  assertEquals((first.json as { error: string }).error, "outcome_unknown");
  assertEquals(first.headers.get("Retry-After"), null);

  await redis.resume();
  await svc.waitReady(30_000);
  const retry = await post();
  assertEquals(retry.status, 200, retry.text);
  const published = (await readStream(client, STREAM)).filter((e) =>
    JSON.parse(e.fields.headers).idempotencyKey === "hung-key-1"
  );
  assertEquals(published.length, 1, "published once, whatever the first request did");
  assertEquals(published[0].id, (retry.json as { id: string }).id);
});
