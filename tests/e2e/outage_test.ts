/**
 * End-to-end tests of Redis outages after a successful start (README: Delivery guarantees), with the real
 * `main.ts` process and a real redis-server killed with SIGKILL and started again: readiness and
 * /health go 503 while liveness stays 200, the service reconnects by itself and consumes entries
 * added afterwards; when Redis comes back empty (no persistence), the consumer group is created
 * again and consumption resumes.
 *
 * @module
 */

import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { type RedisClient, startRedis } from "../support/redis_server.ts";
import {
  exitWithin,
  serviceEnvFor,
  type ServiceProcess,
  startService,
} from "../support/service.ts";
import { waitFor } from "../support/wait.ts";
import {
  checkpoint,
  groupInfo,
  isDrained,
  pendingSummary,
  preload,
  readStream,
  wireEntry,
  xadd,
  xlen,
} from "../support/streams.ts";

const STREAM = "outage-events";

/** Waits until `consumer` acknowledged `id` (its checkpoint) and the group is drained. */
async function waitConsumed(
  client: RedisClient,
  group: string,
  consumer: string,
  id: string,
): Promise<void> {
  await waitFor(
    async () =>
      (await checkpoint(client, STREAM, group))[consumer] === id &&
      await isDrained(client, STREAM, group),
    { timeoutMs: 15_000, message: `${id} to be acknowledged by ${consumer} (pending 0, lag 0)` },
  );
}

/** Checks the probes while Redis is away: ready, health-check and health 503, live 200. */
async function assertUnavailable(svc: ServiceProcess): Promise<void> {
  const ready = await waitFor(async () => {
    const res = await svc.request("/health/ready");
    return res.status === 503 ? res : undefined;
  }, { timeoutMs: 15_000, message: "/health/ready to answer 503 after Redis was killed" });
  const body = ready.json as Record<string, unknown>;
  assertEquals(body.status, "not_ready");
  assert(typeof body.reason === "string", `reason: ${ready.text}`);
  const health = await svc.request("/health");
  assertEquals(health.status, 503, health.text);
  const h = health.json as { status: string; checks: { redis: { status: string } } };
  assertEquals(h.status, "unhealthy");
  assertEquals(h.checks.redis.status, "unhealthy");
  assertEquals((await svc.request("/health-check")).status, 503);
  const live = await svc.request("/health/live");
  assertEquals([live.status, live.text], [200, "OK"], "liveness never depends on Redis");
  assertEquals(svc.status, undefined, "a lost connection never exits the process");
}

Deno.test("the service reconnects, settles what was in flight and consumes new entries after Redis is killed and restarted from its AOF", async () => {
  await using cleanup = new Cleanup();
  // appendfsync always: every acknowledged write is on disk before the SIGKILL.
  const redis = cleanup.use(
    await startRedis({ appendonly: true, args: ["--appendfsync", "always"] }),
  );
  const client = await redis.client();
  const name = "outage-aof-e2e";
  const consumer = "outage-aof-1";
  const svc = cleanup.use(
    await startService({
      env: serviceEnvFor(redis, name, consumer, { STREAM, DIAGNOSTIC_EVENTS: "true" }),
    }),
  );
  // An entry whose handler is still running while Redis goes away.
  const inFlight = await xadd(
    client,
    STREAM,
    wireEntry("diagnostic.sleep", "agg-1", { ms: 1_500 }),
  );
  await waitFor(
    async () => (await pendingSummary(client, STREAM, name)).byConsumer[consumer] === 1,
    { message: "the slow entry to be delivered to the service" },
  );

  await redis.kill();
  await assertUnavailable(svc);

  await redis.restart();
  await svc.waitReady(30_000);
  assertEquals((await svc.request("/health")).status, 200);

  // The AOF kept the stream and the group; the handler's success is acknowledged after the
  // reconnect.
  assertEquals((await readStream(client, STREAM)).map((e) => e.id), [inFlight]);
  await waitConsumed(client, name, consumer, inFlight);
  const ids = await preload(
    client,
    STREAM,
    20,
    (i) => wireEntry("order.created", "agg-1", { n: i + 1 }),
  );
  await waitConsumed(client, name, consumer, ids[ids.length - 1]);
  assertEquals((await groupInfo(client, STREAM, name))?.entriesRead, 21);
  assertEquals(await xlen(client, `${STREAM}:dlq`), 0, "nothing dead-lettered");
});

Deno.test("the service creates its group again and consumes when Redis comes back empty", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis()); // no persistence: a restart starts empty
  const client = await redis.client();
  const name = "outage-empty-e2e";
  const consumer = "outage-empty-1";
  const svc = cleanup.use(
    await startService({
      env: serviceEnvFor(redis, name, consumer, { STREAM, STREAM_START_ID: "0" }),
    }),
  );
  const before = await xadd(client, STREAM, wireEntry("order.created", "agg-1", { n: 0 }));
  await waitConsumed(client, name, consumer, before);
  const created = svc.output().split("\n").filter((l) => l.includes("Created consumer group"));
  assertEquals(created.length, 1, "the group was created once at start");

  await redis.kill();
  await assertUnavailable(svc);
  await redis.restart();

  // An empty server: the service (not the test) creates the group again (NOGROUP).
  await waitFor(() => groupInfo(client, STREAM, name), {
    timeoutMs: 30_000,
    message: `group ${name} to be created again on the empty server`,
  });
  assert(
    !(await readStream(client, STREAM)).some((e) => e.id === before),
    "the restarted server is empty",
  );
  await svc.waitReady(30_000);
  const ids = await preload(
    client,
    STREAM,
    10,
    (i) => wireEntry("order.created", "agg-1", { n: i + 1 }),
  );
  await waitConsumed(client, name, consumer, ids[ids.length - 1]);
  assertEquals((await groupInfo(client, STREAM, name))?.entriesRead, 10);
});

Deno.test("the service exits 0 on SIGTERM while Redis is down and nothing is in flight", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const svc = cleanup.use(
    await startService({
      env: serviceEnvFor(redis, "outage-stop-e2e", "outage-stop-1", {
        STREAM,
        SHUTDOWN_TIMEOUT_MS: "10000",
      }),
    }),
  );
  await redis.kill();
  await assertUnavailable(svc);
  svc.signal("SIGTERM");
  const status = await exitWithin(svc, 15_000);
  assertEquals(status.code, 0, svc.output());
  assert(/Shutdown complete in \d+ ms \(SIGTERM\)/.test(svc.output()), svc.output());
});
