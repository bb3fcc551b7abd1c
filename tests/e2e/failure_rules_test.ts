/**
 * The failure rules on the spawned service (README, "Failure rules"), with real signals and real
 * Redis: a service frozen with SIGSTOP past CLAIM_IDLE_MS does not claim its own running entry; a
 * key of the wrong type in the way at start is waited out; a route target of the wrong type leaves
 * entries pending (counted, /health degraded) until it is fixed, then forwards each once; lag is
 * 0 for a group that read everything of a stream its producer trims; dead letters count from 0.
 *
 * @module
 */

import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { serviceEnvFor, startService } from "../support/service.ts";
import { waitFor } from "../support/wait.ts";
import {
  commandStat,
  createGroup,
  pendingEntries,
  readAsGhost,
  readStream,
  wireEntry,
  xadd,
  xlen,
} from "../support/streams.ts";

const STREAM = "rules-events";
const GROUP = "rules";

function env(redis: RedisServer, consumer: string, extra: Record<string, string> = {}) {
  return serviceEnvFor(redis, "rules-svc", consumer, {
    STREAM,
    CONSUMER_GROUP: GROUP,
    STREAM_START_ID: "0",
    ...extra,
  });
}

Deno.test("a service frozen with SIGSTOP past CLAIM_IDLE_MS resumes without claiming its own running entry", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, STREAM, GROUP);
  const svc = cleanup.use(
    await startService({
      env: env(redis, "frozen-1", {
        CLAIM_IDLE_MS: "1000",
        DIAGNOSTIC_EVENTS: "true",
        ROUTES: "*=>rules-out",
      }),
    }),
  );
  const id = await xadd(client, STREAM, wireEntry("diagnostic.sleep", "a", { ms: 25_000 }));
  await waitFor(async () => (await pendingEntries(client, STREAM, GROUP)).length === 1, {
    message: "the entry is held",
  });
  // Three freezes: after each, the overdue timers fire in some order, the claim loop's maybe
  // before the keep-alive's.
  for (let freeze = 0; freeze < 3; freeze++) {
    svc.pause();
    await waitFor(async () => {
      const [p] = await pendingEntries(client, STREAM, GROUP);
      return p.idleMs > 2_500;
    }, { timeoutMs: 15_000, message: "frozen for 2.5 times CLAIM_IDLE_MS" });
    const before = await commandStat(client, "evalsha");
    svc.resume();
    // Resumed: wait until the entry was refreshed and several more script calls (keep-alives,
    // claim rounds) ran, the handler still sleeping.
    await waitFor(async () => {
      const [p] = await pendingEntries(client, STREAM, GROUP);
      return p.idleMs < 1_000 && await commandStat(client, "evalsha") >= before + 6;
    }, { timeoutMs: 8_000, message: "the entry refreshed after resuming" });
  }
  const [held] = await pendingEntries(client, STREAM, GROUP);
  assertEquals({ id: held.id, consumer: held.consumer, deliveries: held.deliveries }, {
    id,
    consumer: "frozen-1",
    deliveries: 1,
  });
  await waitFor(async () => await xlen(client, "rules-out") === 1, {
    timeoutMs: 30_000,
    message: "forwarded once the handler finished",
  });
  await waitFor(async () => (await pendingEntries(client, STREAM, GROUP)).length === 0, {
    message: "acknowledged",
  });
});

Deno.test("a key of the wrong type in the way at start is waited out: ready once it is gone", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await client.set(STREAM, "in the way");
  const svc = cleanup.use(await startService({ env: env(redis, "heal-1"), waitReady: false }));
  await svc.waitForLine(/Creating the consumer groups failed.*WRONGTYPE/, 20_000);
  const ready = await svc.request("/health/ready");
  assertEquals(ready.status, 503);
  assertEquals((ready.json as { reason: string }).reason, "consumer_inactive");
  await client.del(STREAM);
  await svc.waitReady(30_000);
  const id = await xadd(client, STREAM, wireEntry("test.after", "a"));
  await waitFor(async () => {
    const text = (await svc.request("/metrics")).text;
    return text.includes(
      `stream_messages_consumed_total{stream="${STREAM}",event="test.after",outcome="acked"} 1`,
    );
  }, { message: `${id} consumed` });
});

Deno.test("a route target of the wrong type leaves entries pending, counted and degraded, until it is fixed", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, STREAM, GROUP);
  await client.set("rules-out", "in the way");
  const svc = cleanup.use(
    await startService({
      env: env(redis, "routes-1", { ROUTES: "*=>rules-out", CLAIM_IDLE_MS: "1000" }),
    }),
  );
  const metrics0 = (await svc.request("/metrics")).text;
  assertStringIncludes(metrics0, `stream_dead_letters_total{stream="${STREAM}"} 0`);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    ids.push(await xadd(client, STREAM, wireEntry("order.created", `o${i}`)));
  }
  await waitFor(async () => {
    const text = (await svc.request("/metrics")).text;
    return /stream_settle_failures_total\{stream="rules-events",reason="target_type"\} [1-9]/.test(
      text,
    );
  }, { message: "settle failures counted" });
  const health = await waitFor(async () => {
    const res = await svc.request("/health");
    return (res.json as { status: string }).status === "degraded" ? res : undefined;
  }, { message: "/health degraded" });
  assertStringIncludes(health.text, "could not be settled");
  assertEquals(await client.type("rules-out"), "string", "nothing written over the key");
  assertEquals((await pendingEntries(client, STREAM, GROUP)).length, 5, "all five stay pending");

  await client.del("rules-out");
  await waitFor(async () => (await pendingEntries(client, STREAM, GROUP)).length === 0, {
    timeoutMs: 20_000,
    message: "settled once the key is gone",
  });
  const out = await readStream(client, "rules-out");
  assertEquals(out.map((e) => JSON.parse(e.fields.headers).sourceId).sort(), [...ids].sort());
});

Deno.test("/health reports lag 0 for a group that read everything of a stream its producer trims", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, STREAM, GROUP);
  for (let i = 0; i < 100; i++) await xadd(client, STREAM, wireEntry("test.early", `a${i}`));
  await client.sendCommand([
    "XACK",
    STREAM,
    GROUP,
    ...await readAsGhost(client, STREAM, GROUP, "early", 100),
  ]);
  for (let i = 0; i < 300; i++) {
    await xadd(client, STREAM, wireEntry("test.trimmed", `b${i}`));
    await client.sendCommand(["XTRIM", STREAM, "MAXLEN", "100"]);
  }
  const svc = cleanup.use(await startService({ env: env(redis, "lag-1") }));
  const last =
    (await client.sendCommand(["XREVRANGE", STREAM, "+", "-", "COUNT", "1"]) as [string][])[0][0];
  const stream = await waitFor(async () => {
    const res = await svc.request("/health");
    const s = (res.json as { checks: { eventStream: { pending: number; lag: number } } }).checks
      .eventStream;
    return s.pending === 0 && s.lag === 0 ? s : undefined;
  }, { message: "/health: pending 0, lag 0" });
  assertEquals(stream.lag, 0);
  const [g] = (await client.sendCommand(["XINFO", "GROUPS", STREAM]) as unknown[][]).map((r) =>
    Object.fromEntries(Array.from({ length: r.length / 2 }, (_, i) => [r[2 * i], r[2 * i + 1]]))
  );
  assertEquals(g["last-delivered-id"], last, "the group read everything");
  const metrics = (await svc.request("/metrics")).text;
  assert(
    metrics.includes(`stream_consumer_lag{stream="${STREAM}",group="${GROUP}"} 0`),
    "the gauge says 0 too",
  );
});
