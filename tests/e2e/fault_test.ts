/**
 * Fault-injection end-to-end tests of the delivery guarantees (README: Delivery guarantees), with real
 * processes: the service (`main.ts`) killed with SIGKILL mid-drain and restarted, Redis killed
 * and restarted under load, failing handlers, a ghost consumer's idle entries, two live
 * instances sharing slow entries, 100 consumers in one group, a consumer catching up after
 * being offline, and per-aggregate order under concurrency. Every test waits for conditions
 * with deadlines (never "long enough") and stops every process it started.
 *
 * @module
 */

import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { waitFor } from "../support/wait.ts";
import {
  createGroup,
  groupInfo,
  isDrained,
  pendingEntries,
  preload,
  readAsGhost,
  readStream,
  wireEntry,
  xlen,
} from "../support/streams.ts";
import { assertExactlyOnce, sourceIdOf } from "../support/coverage.ts";
import { ConsumersProcess } from "../support/consumers_process.ts";

const STREAM = "event-stream";
const GROUP = "faults";
const OUT = "out";

/** The service's environment for `redis`, with the test's variables on top. */
function serviceEnv(redis: RedisServer, extra: Record<string, string>): Record<string, string> {
  return {
    ...redis.env(),
    SERVICE_NAME: "fault-svc",
    STREAM,
    CONSUMER_GROUP: GROUP,
    STREAM_START_ID: "0",
    LOG_LEVEL: "INFO",
    ...extra,
  };
}

/**
 * Preloads 20,000 entries, SIGKILLs the service 5 times at random points of the drain (once the
 * forwarded stream grew by a random amount), restarting it each time, then checks that the
 * forwarded stream holds every source entry exactly once.
 */
async function drainThroughKills(names: (k: number) => string): Promise<void> {
  const N = 20_000;
  const KILLS = 5;
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const ids = await preload(client, STREAM, N);
  const started = Date.now();
  let outAtKill = 0;
  for (let k = 0;; k++) {
    const svc: ServiceProcess = cleanup.use(
      await startService({
        env: serviceEnv(redis, {
          ROUTES: `*=>${OUT}`,
          CLAIM_IDLE_MS: "1000",
          // An instance delivers an entry at most once; 6 instances must not dead-letter it.
          MAX_DELIVERIES: "10",
          CONSUMER_NAME: names(k),
        }),
      }),
    );
    if (k === KILLS) break;
    const target = outAtKill + 300 + Math.floor(Math.random() * 1500);
    await waitFor(async () => await xlen(client, OUT) >= target, {
      timeoutMs: 30_000,
      intervalMs: 10,
      message: `${OUT} to reach ${target} entries before kill ${k + 1}`,
    });
    await svc.kill();
    outAtKill = await xlen(client, OUT);
    assert(outAtKill < N, `kill ${k + 1} came after the drain ended (${outAtKill} forwarded)`);
  }
  await waitFor(() => isDrained(client, STREAM, GROUP), {
    timeoutMs: 60_000,
    intervalMs: 100,
    message: "pending 0 and lag 0 after the last restart",
  });
  console.log(
    `drained through ${KILLS} kills (last at ${outAtKill}) in ${Date.now() - started} ms`,
  );
  assertExactlyOnce(await readStream(client, OUT), ids, OUT);
  assertEquals(await xlen(client, `${STREAM}:dlq`), 0, "nothing dead-lettered");
}

Deno.test("service forwards every entry exactly once when SIGKILLed 5 times mid-drain (new name each restart)", async () => {
  // What a killed instance held stays pending on a dead consumer: a later one must claim it.
  await drainThroughKills((k) => `drainer-${k}`);
});

Deno.test("service forwards every entry exactly once when SIGKILLed 5 times mid-drain (same name)", async () => {
  // A restarted instance first re-reads its own pending entries (id 0).
  await drainThroughKills(() => "drainer");
});

Deno.test("service handles every entry and is ready again when Redis is SIGKILLed mid-drain", async () => {
  const N = 20_000;
  await using cleanup = new Cleanup();
  // appendfsync always: Redis writes and fsyncs the AOF before it replies, so a SIGKILL loses
  // nothing a client was told about (the preload's XADDs, the settle script's XACK + forwarding,
  // which the AOF keeps as one MULTI/EXEC). With everysec the write may be postponed while an
  // fsync is slow (up to 2 s): a kill could then lose acknowledged writes, preloaded entries
  // included, and "none lost" would test Redis rather than the service.
  const redis = cleanup.use(
    await startRedis({ appendonly: true, args: ["--appendfsync", "always"] }),
  );
  const client = await redis.client();
  const ids = await preload(client, STREAM, N);
  const svc = cleanup.use(
    await startService({ env: serviceEnv(redis, { ROUTES: `*=>${OUT}`, CONSUMER_NAME: "solo" }) }),
  );
  // Two outages: a short one, and one that lasts through several failed reconnect attempts.
  const killedAt: number[] = [];
  for (const [i, longOutage] of [false, true].entries()) {
    const target = (i + 1) * 2_500;
    await waitFor(async () => await xlen(client, OUT) >= target, {
      timeoutMs: 30_000,
      intervalMs: 10,
      message: `${OUT} to reach ${target} entries`,
    });
    const mark = svc.mark();
    const beforeKill = await xlen(client, OUT);
    await redis.kill();
    assert(beforeKill < N, `Redis was killed after the drain ended (${beforeKill} forwarded)`);
    killedAt.push(beforeKill);
    await waitFor(
      async () => (await svc.request("/health/ready", { timeoutMs: 1_000 })).status === 503,
      { timeoutMs: 10_000, message: "/health/ready to answer 503 while Redis is down" },
    );
    if (longOutage) await svc.waitForLine("Reconnect attempt 3 failed", 10_000, mark);
    const whileDown = await svc.request("/health/ready", { timeoutMs: 1_000 });
    assertEquals(whileDown.status, 503, "still 503 while Redis is down");
    await redis.restart();
    await svc.waitReady(30_000);
  }
  await waitFor(() => isDrained(client, STREAM, GROUP), {
    timeoutMs: 60_000,
    intervalMs: 100,
    message: "pending 0 and lag 0 after Redis came back",
  });
  console.log(`Redis killed at ${killedAt.join(" and ")} forwarded entries`);
  assertExactlyOnce(await readStream(client, OUT), ids, OUT);
  assertEquals((await svc.request("/health/ready")).status, 200);
});

/** Value of one sample of the Prometheus text `metrics` (0 when absent). */
function sample(metrics: string, name: string, labels: Record<string, string>): number {
  for (const line of metrics.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const want = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (want) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return 0;
}

Deno.test("failing handler is retried until it succeeds, or dead-lettered after MAX_DELIVERIES", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const svc = cleanup.use(
    await startService({
      env: serviceEnv(redis, {
        DIAGNOSTIC_EVENTS: "true",
        MAX_DELIVERIES: "3",
        ROUTES: `*=>${OUT}`,
        CONSUMER_NAME: "retrier",
        LOG_LEVEL: "DEBUG",
      }),
    }),
  );
  // Fails on deliveries 1 and 2, succeeds on 3: acknowledged and forwarded, not dead-lettered.
  const [flaky] = await preload(
    client,
    STREAM,
    1,
    () => wireEntry("diagnostic.fail", "agg-0", { failTimes: 2 }),
  );
  await waitFor(async () => (await readStream(client, OUT)).some((e) => sourceIdOf(e) === flaky), {
    message: `${flaky} to be forwarded after its third delivery`,
  });
  assertEquals(
    await pendingEntries(client, STREAM, GROUP),
    [],
    "nothing pending after the success",
  );
  await svc.waitForLine(`failed on delivery 1/3`);
  await svc.waitForLine(`failed on delivery 2/3`);
  assert(!svc.output().includes("failed on delivery 3/3"), "third delivery must succeed");
  assertEquals(await xlen(client, `${STREAM}:dlq`), 0, "not dead-lettered");
  const metrics = (await svc.request("/metrics")).text;
  const labels = { stream: STREAM, event: "diagnostic.fail" };
  assertEquals(
    [
      sample(metrics, "stream_messages_consumed_total", { ...labels, outcome: "retried" }),
      sample(metrics, "stream_messages_consumed_total", { ...labels, outcome: "acked" }),
    ],
    [2, 1],
    "two retried deliveries, then one acknowledgement",
  );

  // Always fails: dead-lettered on delivery 3 (MAX_DELIVERIES), then acknowledged.
  const [doomed] = await preload(
    client,
    STREAM,
    1,
    () => wireEntry("diagnostic.fail", "agg-1", {}),
  );
  const dlq = await waitFor(async () => {
    const entries = await readStream(client, `${STREAM}:dlq`);
    return entries.find((e) => e.fields.sourceId === doomed);
  }, { message: `${doomed} in the dead-letter stream` });
  assertEquals(dlq.fields.deliveries, "3");
  assertEquals(dlq.fields.sourceStream, STREAM);
  assertEquals(dlq.fields.event, "diagnostic.fail");
  assertEquals(dlq.fields.payload, "{}");
  assertEquals(dlq.fields.consumer, "retrier");
  assertStringIncludes(dlq.fields.error, "diagnostic.fail");
  await waitFor(async () => (await pendingEntries(client, STREAM, GROUP)).length === 0, {
    message: "the dead-lettered entry acknowledged",
  });
  assert(
    !(await readStream(client, OUT)).some((e) => sourceIdOf(e) === doomed),
    "a dead-lettered entry is not forwarded",
  );

  // The loop still runs: a later entry is consumed.
  const [later] = await preload(
    client,
    STREAM,
    1,
    () => wireEntry("manual_test", "agg-2", { n: 2 }),
  );
  await svc.waitForLine(new RegExp(`Received manual_test ${later}`));
  await waitFor(() => isDrained(client, STREAM, GROUP), {
    message: "the later entry acknowledged",
  });
});

Deno.test("idle entries of a ghost consumer are claimed and acknowledged within 10 s", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, STREAM, GROUP);
  const ids = await preload(client, STREAM, 10);
  // The ghost reads them and never acknowledges.
  const read = await readAsGhost(client, STREAM, GROUP, "ghost", 10);
  const idleAt = Date.now() + 1_000;
  assertEquals(read, ids);
  assertEquals(
    (await pendingEntries(client, STREAM, GROUP)).map((p) => [p.id, p.consumer]),
    ids.map((id) => [id, "ghost"]),
  );
  cleanup.use(
    await startService({
      env: serviceEnv(redis, { CLAIM_IDLE_MS: "1000", ROUTES: `*=>${OUT}`, CONSUMER_NAME: "heir" }),
    }),
  );
  await waitFor(() => isDrained(client, STREAM, GROUP), {
    timeoutMs: Math.max(0, idleAt + 10_000 - Date.now()),
    message: "the ghost's entries claimed and acknowledged within 10 s of becoming idle",
  });
  console.log(`claimed and acknowledged ${Date.now() - idleAt} ms after they became idle`);
  assertExactlyOnce(await readStream(client, OUT), ids, OUT);
});

Deno.test("two live instances never take each other's running entries (CLAIM_IDLE_MS=500)", async () => {
  const N = 20;
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const env = (name: string) =>
    serviceEnv(redis, {
      CONSUMER_NAME: name,
      ROUTES: `*=>${OUT}`,
      CLAIM_IDLE_MS: "500",
      DIAGNOSTIC_EVENTS: "true",
      STREAM_START_ID: "$",
      // One entry per read, so that both instances get a share.
      BATCH_SIZE: "1",
    });
  const [a, b] = await Promise.all([
    startService({ env: env("live-a") }),
    startService({ env: env("live-b") }),
  ]);
  cleanup.use(a);
  cleanup.use(b);
  // One at a time, so that both blocked readers get some.
  const ids: string[] = [];
  for (let i = 0; i < N; i++) {
    const entry = wireEntry("diagnostic.sleep", `sleep-${i}`, { ms: 3000 });
    ids.push(...await preload(client, STREAM, 1, () => entry));
  }
  // While the handlers sleep, well past CLAIM_IDLE_MS, no entry may be delivered again.
  let maxDeliveries = 0;
  let sawPending = 0;
  const owners = new Map<string, string>();
  await waitFor(async () => {
    const pending = await pendingEntries(client, STREAM, GROUP);
    sawPending = Math.max(sawPending, pending.length);
    for (const { id, consumer: owner, deliveries } of pending) {
      maxDeliveries = Math.max(maxDeliveries, deliveries);
      owners.set(id, owner);
    }
    return pending.length === 0 && await isDrained(client, STREAM, GROUP);
  }, { timeoutMs: 30_000, intervalMs: 100, message: "all sleeping entries acknowledged" });
  assert(sawPending > 0, "the entries were seen pending while their handlers slept");
  assertEquals(maxDeliveries, 1, "no entry was delivered twice");
  assertExactlyOnce(await readStream(client, OUT), ids, OUT);
  const claims = [a, b].flatMap((s) => s.lines.filter((l) => l.includes("Claimed")));
  assertEquals(claims, [], "no instance claimed entries of the other");
  const byOwner: Record<string, number> = {};
  for (const owner of owners.values()) byOwner[owner] = (byOwner[owner] ?? 0) + 1;
  console.log(`entries per instance (seen pending): ${JSON.stringify(byOwner)}`);
});

Deno.test("consumer offline while 10,000 entries arrive catches up after its restart", async () => {
  const N = 10_000;
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const env = serviceEnv(redis, { CONSUMER_NAME: "sleeper", STREAM_START_ID: "$" });
  const first = cleanup.use(await startService({ env }));
  assertEquals((await first.stop()).code, 0, "clean shutdown");
  await preload(client, STREAM, N);
  const restarted = Date.now();
  const second = cleanup.use(await startService({ env }));
  const ready = Date.now();
  await waitFor(() => isDrained(client, STREAM, GROUP), {
    timeoutMs: 30_000,
    intervalMs: 50,
    message: "pending 0 and lag 0 after the restart",
  });
  const done = Date.now();
  console.log(
    `caught up with ${N} entries ${done - restarted} ms after the restart ` +
      `(${done - ready} ms after it was ready)`,
  );
  assertEquals((await second.request("/health/ready")).status, 200);
});

Deno.test("entries of one aggregate are forwarded in stream order under HANDLER_CONCURRENCY=16", async () => {
  const N = 4_000;
  const AGGREGATES = 40;
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  // Random short sleeps let later entries of other aggregates overtake: order must hold per
  // aggregate only.
  const ids = await preload(
    client,
    STREAM,
    N,
    () =>
      wireEntry("diagnostic.sleep", `order-${Math.floor(Math.random() * AGGREGATES)}`, {
        ms: Math.floor(Math.random() * 6),
      }),
  );
  cleanup.use(
    await startService({
      env: serviceEnv(redis, {
        CONSUMER_NAME: "orderly",
        ROUTES: `*=>${OUT}`,
        DIAGNOSTIC_EVENTS: "true",
        HANDLER_CONCURRENCY: "16",
      }),
    }),
  );
  await waitFor(() => isDrained(client, STREAM, GROUP), {
    timeoutMs: 60_000,
    intervalMs: 100,
    message: "all entries acknowledged",
  });
  const out = await readStream(client, OUT);
  assertExactlyOnce(out, ids, OUT);
  const position = new Map(ids.map((id, i) => [id, i]));
  const last = new Map<string, number>();
  const violations: string[] = [];
  let overtakes = 0;
  let previous = -1;
  for (const e of out) {
    const at = position.get(sourceIdOf(e))!;
    if (at < previous) overtakes++;
    previous = at;
    const agg = e.fields.aggregateId;
    if ((last.get(agg) ?? -1) > at) violations.push(`${agg}: ${sourceIdOf(e)} after a later one`);
    last.set(agg, at);
  }
  assertEquals(violations.slice(0, 10), [], "per-aggregate order in the forwarded stream");
  // Proof that the check had teeth: handlers did run concurrently and finish out of stream order.
  assert(overtakes > 0, "entries of different aggregates were forwarded out of stream order");
  console.log(`${overtakes} cross-aggregate overtakes, 0 same-aggregate ones`);
});

/**
 * Drains `count` preloaded entries of `stream` with `processes` fixture processes of
 * `perProcess` consumers each, checks each entry ran and was forwarded exactly once, and
 * returns the drain time in ms (from the start signal to pending 0 and lag 0).
 */
async function drainWithConsumers(
  redis: RedisServer,
  stream: string,
  count: number,
  processes: number,
  perProcess: number,
): Promise<number> {
  await using cleanup = new Cleanup();
  const client = await redis.client();
  const ids = await preload(client, stream, count);
  const target = `${stream}:out`;
  const countKey = `${stream}:processed`;
  const procs = Array.from({ length: processes }, (_, p) =>
    cleanup.use(
      new ConsumersProcess({
        ...redis.env(),
        SERVICE_NAME: "fanout",
        STREAM: stream,
        CONSUMER_GROUP: GROUP,
        STREAM_START_ID: "0",
        ROUTES: `*=>${target}`,
        CONSUMERS: String(perProcess),
        CONSUMER_PREFIX: `${stream}-p${p}`,
        COUNT_KEY: countKey,
      }),
    ));
  await Promise.all(procs.map((p) => p.waitForLine("connected", 30_000)));
  const started = performance.now();
  await Promise.all(procs.map((p) => p.go()));
  await waitFor(() => isDrained(client, stream, GROUP), {
    timeoutMs: 60_000,
    intervalMs: 20,
    message: `${stream}: pending 0 and lag 0`,
  });
  const elapsed = performance.now() - started;
  const state = await groupInfo(client, stream, GROUP);
  assertEquals(state?.consumers, processes * perProcess, "consumers in the group");
  const codes = await Promise.all(procs.map((p) => p.stop()));
  assertEquals(codes, procs.map(() => 0), "fixture processes stopped cleanly");

  // Each entry's handler ran exactly once…
  const counted = await client.sendCommand(["HGETALL", countKey]) as string[];
  const runs = new Map<string, string>();
  for (let i = 0; i + 1 < counted.length; i += 2) runs.set(counted[i], counted[i + 1]);
  const ranTwice = [...runs].filter(([, n]) => n !== "1");
  assertEquals(ranTwice.slice(0, 10), [], "no handler ran twice");
  assertEquals(runs.size, count, "every entry's handler ran");
  assert(ids.every((id) => runs.has(id)), "the handled ids are the preloaded ones");
  // …and it was acknowledged and forwarded once.
  assertExactlyOnce(await readStream(client, target), ids, target);
  const checkpoint = await client.sendCommand(
    ["HKEYS", `${stream}:checkpoint:${GROUP}`],
  ) as string[];
  const acking = checkpoint.filter((k) => !k.endsWith(":at")).length;
  assert(acking >= 2, `work was spread over consumers (${acking} acknowledged entries)`);
  console.log(
    `${processes}x${perProcess} consumers: ${count} entries in ${Math.round(elapsed)} ms ` +
      `(${Math.round(count / (elapsed / 1000))} entries/s), ${acking} consumers acknowledged some`,
  );
  return elapsed;
}

Deno.test("100 consumers in 5 processes handle and acknowledge 20,000 entries once each", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  // Throughput is printed for comparison, never asserted (timing belongs to the bench).
  const wide = await drainWithConsumers(redis, "wide", 20_000, 5, 20);
  const narrow = await drainWithConsumers(redis, "narrow", 20_000, 1, 4);
  console.log(
    `throughput: 100 consumers ${Math.round(20_000 / (wide / 1000))}/s, ` +
      `4 consumers ${Math.round(20_000 / (narrow / 1000))}/s`,
  );
});
