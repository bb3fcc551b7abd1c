/**
 * End-to-end tests of graceful shutdown (README: Start-up, shutdown and exit codes), with the real `main.ts` process and a
 * real redis-server: SIGTERM in the middle of a 5,000-entry backlog finishes and acknowledges
 * what was in flight (nothing left pending, checkpoint written, exit 0, reason and duration
 * logged) and a second start consumes the rest, each entry exactly once; a handler that outlives
 * `SHUTDOWN_TIMEOUT_MS` makes the process exit 1 with its entry left pending (and the next start
 * acknowledges it); readiness turns 503 at once on SIGTERM while HTTP still answers and a slow
 * handler finishes, a second SIGTERM notwithstanding.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { exitWithin, serviceEnvFor, startService } from "../support/service.ts";
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

const STREAM = "shutdown-events";

Deno.test("SIGTERM mid-backlog acknowledges what was in flight, exits 0, and a restart consumes the rest once", async () => {
  const COUNT = 5_000;
  const OUT = "shutdown-out";
  const name = "shutdown-drain-e2e";
  const consumer = "shutdown-drain-1";
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  // Every entry sleeps a few ms in 8 aggregates (one after another within each): the drain takes
  // seconds, so SIGTERM lands in the middle.
  const ids = await preload(
    client,
    STREAM,
    COUNT,
    (i) => wireEntry("diagnostic.sleep", `agg-${i % 8}`, { ms: 3, n: i }),
  );
  const env = serviceEnvFor(redis, name, consumer, {
    STREAM,
    STREAM_START_ID: "0",
    BATCH_SIZE: "50",
    DIAGNOSTIC_EVENTS: "true",
    ROUTES: `*=>${OUT}`, // exactly-once witness: one forwarded copy per acknowledged entry
  });

  const first = cleanup.use(await startService({ env }));
  await waitFor(async () => {
    const g = await groupInfo(client, STREAM, name);
    return g !== undefined && (g.entriesRead ?? 0) - g.pending >= 300;
  }, { timeoutMs: 20_000, intervalMs: 10, message: "300 entries to be acknowledged" });
  const mark = first.mark();
  first.signal("SIGTERM");
  const status = await exitWithin(first);
  assertEquals(status.code, 0, first.output());

  const log = first.output().split("\n").slice(mark).join("\n");
  assertMatch(log, /Shutting down on SIGTERM/);
  assertMatch(log, /Shutdown complete in \d+ ms \(SIGTERM\)/);

  const afterStop = await groupInfo(client, STREAM, name);
  assert(afterStop, "group exists");
  assertEquals((await pendingSummary(client, STREAM, name)).total, 0, "nothing left pending");
  assert(
    (afterStop.lag ?? 0) > 0,
    `SIGTERM came after the drain ended: ${JSON.stringify(afterStop)}`,
  );
  const cp = await checkpoint(client, STREAM, name);
  assertEquals(cp[consumer], afterStop.lastDeliveredId, "checkpoint at the last entry read");
  assert(
    !Number.isNaN(Date.parse(cp[`${consumer}:at`])),
    `checkpoint time: ${cp[`${consumer}:at`]}`,
  );
  assertEquals(await xlen(client, OUT), afterStop.entriesRead, "each acknowledged entry forwarded");

  const second = cleanup.use(await startService({ env }));
  await waitFor(() => isDrained(client, STREAM, name), {
    timeoutMs: 30_000,
    intervalMs: 50,
    message: "the rest of the backlog to be drained after the restart",
  });
  assertEquals((await groupInfo(client, STREAM, name))?.entriesRead, COUNT);
  assertEquals((await checkpoint(client, STREAM, name))[consumer], ids[COUNT - 1]);
  assertEquals(await xlen(client, `${STREAM}:dlq`), 0, "nothing dead-lettered");
  const forwarded = (await readStream(client, OUT)).map((e) =>
    (JSON.parse(e.fields.headers) as Record<string, string>).sourceId
  );
  assertEquals(forwarded.length, COUNT, "each entry forwarded once");
  assertEquals(new Set(forwarded).size, COUNT, "no entry handled to success twice");
  assertEquals((await second.stop()).code, 0, second.output());
});

Deno.test("SIGTERM exits 1 and leaves the entry pending when a handler outlives SHUTDOWN_TIMEOUT_MS", async () => {
  const name = "shutdown-budget-e2e";
  const consumer = "shutdown-budget-1";
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const svc = cleanup.use(
    await startService({
      env: serviceEnvFor(redis, name, consumer, {
        STREAM,
        DIAGNOSTIC_EVENTS: "true",
        SHUTDOWN_TIMEOUT_MS: "1000",
      }),
    }),
  );
  const id = await xadd(client, STREAM, wireEntry("diagnostic.sleep", "agg-1", { ms: 20_000 }));
  await waitFor(
    async () => (await pendingSummary(client, STREAM, name)).byConsumer[consumer] === 1,
    {
      message: "the slow entry to be delivered to the service",
    },
  );

  const mark = svc.mark();
  svc.signal("SIGTERM");
  const status = await exitWithin(svc);
  assertEquals(status.code, 1, svc.output());
  const log = svc.output().split("\n").slice(mark).join("\n");
  assertMatch(log, /Shutting down on SIGTERM/);
  assertMatch(log, /budget/i);

  const pending = await pendingSummary(client, STREAM, name);
  assertEquals(pending, { total: 1, byConsumer: { [consumer]: 1 } }, "the entry stays pending");
  const [entry] = await client.sendCommand(["XPENDING", STREAM, name, "-", "+", "10"]) as [
    string,
    string,
    number,
    number,
  ][];
  assertEquals(entry[0], id);
  assertEquals(await xlen(client, `${STREAM}:dlq`), 0, "nothing dead-lettered");
  assertEquals((await checkpoint(client, STREAM, name))[consumer], undefined, "nothing acked");

  // Nothing is lost: the next start of this consumer re-reads its pending entry. Without the
  // diagnostic handlers the default handler takes it and succeeds at once.
  const next = cleanup.use(
    await startService({ env: serviceEnvFor(redis, name, consumer, { STREAM }) }),
  );
  await waitFor(async () => (await checkpoint(client, STREAM, name))[consumer] === id, {
    message: "the pending entry to be redelivered and acknowledged after a restart",
  });
  assertEquals((await pendingSummary(client, STREAM, name)).total, 0);
  assertEquals((await next.stop()).code, 0, next.output());
});

Deno.test("SIGTERM turns readiness 503 at once while HTTP answers and a slow handler finishes, even when sent twice", async () => {
  const name = "shutdown-ready-e2e";
  const consumer = "shutdown-ready-1";
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const svc = cleanup.use(
    await startService({
      env: serviceEnvFor(redis, name, consumer, { STREAM, DIAGNOSTIC_EVENTS: "true" }),
    }),
  );
  // The checks below must run while the handler still sleeps. Each has its own deadline and
  // together they take at most 6 s (2 + 2 + 1 + 1): sleeping 10 s, the handler outlasts them
  // however slow the machine, and a check that is late fails by its own timeout instead.
  const id = await xadd(client, STREAM, wireEntry("diagnostic.sleep", "agg-1", { ms: 10_000 }));
  await waitFor(
    async () => (await pendingSummary(client, STREAM, name)).byConsumer[consumer] === 1,
    {
      message: "the slow entry to be delivered to the service",
    },
  );

  svc.signal("SIGTERM");
  const ready = await waitFor(async () => {
    const res = await svc.request("/health/ready", { timeoutMs: 1_000 });
    return res.status === 503 ? res : undefined;
  }, { timeoutMs: 2_000, message: "/health/ready to answer 503 after SIGTERM" });
  assertEquals((ready.json as Record<string, unknown>).reason, "shutting_down");
  // Orchestrators often signal twice: the second one must not cut the drain short.
  svc.signal("SIGTERM");
  await svc.waitForLine(/while shutting down; still draining/, 2_000);
  assertEquals((await svc.request("/health-check", { timeoutMs: 1_000 })).status, 503);
  const live = await svc.request("/health/live", { timeoutMs: 1_000 });
  assertEquals([live.status, live.text], [200, "OK"]);
  // All of that while the handler still ran: the entry is not acknowledged yet.
  assertEquals(svc.status, undefined, "the process is still draining");
  assertEquals((await pendingSummary(client, STREAM, name)).total, 1, "still in flight");

  const status = await exitWithin(svc);
  assertEquals(status.code, 0, svc.output());
  assertEquals((await pendingSummary(client, STREAM, name)).total, 0, "finished and acknowledged");
  assertEquals((await checkpoint(client, STREAM, name))[consumer], id);
  assertMatch(svc.output(), /Shutdown complete in \d+ ms \(SIGTERM\)/);
});
