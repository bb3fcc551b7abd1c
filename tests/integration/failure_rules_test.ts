/**
 * The failure rules of the consumer against a real redis-server (README, "Failure rules"): no
 * acknowledgement without its copies (targets, dead-letter stream and marks of the wrong type,
 * entries over the field limit), byte-exact copies, no self-claims while paused under CPU load,
 * a start-up that heals, background failures counted, dead letters counted from zero.
 */
import { Buffer } from "node:buffer";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import {
  commandStat,
  createGroup,
  groups,
  pendingCount,
  pendingEntries,
  readAsGhost,
  readStream,
  wireEntry,
  xadd,
  xlen,
} from "../support/streams.ts";
import { gate, waitFor } from "../support/wait.ts";
import { ConnectionManager } from "../../src/redis/connection.ts";
import { Metrics } from "../../src/metrics.ts";
import { StreamConsumer } from "../../src/stream/consumer/consumer.ts";
import { consumerSettings } from "../../src/stream/consumer/settings.ts";
import { HandlerRegistry } from "../../src/stream/handlers.ts";
import { Router } from "../../src/stream/router.ts";
import { GROUP, startConsumer, testConfig } from "../support/in_process_consumer.ts";

/** Every entry of `stream`, field names and values as hex of the bytes Redis holds. */
async function rawEntries(
  client: Awaited<ReturnType<Awaited<ReturnType<typeof startRedis>>["client"]>>,
  stream: string,
): Promise<{ id: string; fields: string[] }[]> {
  const reply = await client.sendCommand([
    "EVAL",
    `local out = {}
     for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
       local f = {}
       for j, v in ipairs(e[2]) do
         f[j] = (v:gsub('.', function(c) return string.format('%02x', string.byte(c)) end))
       end
       out[#out + 1] = {e[1], f}
     end
     return out`,
    "1",
    stream,
  ]) as [string, string[]][];
  return reply.map(([id, fields]) => ({ id, fields }));
}

const hex = (s: string | Uint8Array) =>
  [...(typeof s === "string" ? new TextEncoder().encode(s) : s)]
    .map((b) => b.toString(16).padStart(2, "0")).join("");

Deno.test("settle leaves entries whose route target has the wrong type pending, settles the rest, forwards them once fixed", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  await client.set("out", "not a stream");
  const routed: string[] = [];
  const plain: string[] = [];
  for (let i = 0; i < 3; i++) {
    routed.push(await xadd(client, "s", wireEntry("order.created", `o${i}`)));
    plain.push(await xadd(client, "s", wireEntry("user.updated", `u${i}`)));
  }
  await startConsumer(cleanup, redis, { ROUTES: "order.*=>out", CLAIM_IDLE_MS: "500" });
  await waitFor(async () => {
    const pending = await pendingEntries(client, "s", GROUP);
    return pending.length === 3 &&
      JSON.stringify(pending.map((p) => p.id)) === JSON.stringify(routed);
  }, { message: "only the routed entries pending" });
  assertEquals(await client.type("out"), "string", "nothing written over the key in the way");

  await client.del("out");
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
  const out = await readStream(client, "out");
  assertEquals(
    out.map((e) => JSON.parse(e.fields.headers).sourceId).sort(),
    [...routed].sort(),
    "each routed entry forwarded exactly once",
  );
});

Deno.test("a malformed entry stays pending while the dead-letter stream has the wrong type", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  await client.set("s:dlq", "in the way");
  const bad = await xadd(client, "s", { aggregateId: "a", payload: "{}" });
  const good = await xadd(client, "s", wireEntry("test.ok", "b"));
  await startConsumer(cleanup, redis, { CLAIM_IDLE_MS: "500" });
  await waitFor(async () => {
    const pending = await pendingEntries(client, "s", GROUP);
    return pending.length === 1 && pending[0].id === bad;
  }, { message: `only ${bad} pending (${good} acknowledged)` });
  await client.del("s:dlq");
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
  const dlq = await readStream(client, "s:dlq");
  assertEquals(dlq.map((e) => e.fields.sourceId), [bad]);
});

Deno.test("an entry with 5,000 fields is dead-lettered with its first 1,000 fields, not lost", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const fields: Record<string, string> = wireEntry("test.wide", "w");
  for (let i = 0; fieldsCount(fields) < 5000; i++) fields[`f${i}`] = `v${i}`;
  const id = await xadd(client, "s", fields);
  await startConsumer(cleanup, redis, { ROUTES: "*=>out" });
  await waitFor(async () => await xlen(client, "s:dlq") === 1, { message: "a dead letter" });
  assertEquals(await pendingCount(client, "s", GROUP), 0);
  const [dead] = await rawEntries(client, "s:dlq");
  assert(dead, "a dead letter");
  const [source] = await rawEntries(client, "s");
  assertEquals(dead.fields.length, 2 * 1000 + 12);
  assertEquals(dead.fields.slice(0, 2000), source.fields.slice(0, 2000), "leading fields kept");
  const extra = (await readStream(client, "s:dlq"))[0].fields;
  assertEquals(extra.sourceId, id);
  assertStringIncludes(extra.error, "1000 field limit");
  assertEquals(await xlen(client, "out"), 0, "not forwarded");
});

function fieldsCount(f: Record<string, string>): number {
  return Object.keys(f).length;
}

Deno.test("forwarded and dead-letter copies are byte-exact: binary values, binary names, repeated names", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  const binary = new Uint8Array([0xff, 0xfe, 0x00, 0x41, 0xc3]);
  const binaryName = new Uint8Array([0x80, 0x81]);
  const base = wireEntry("order.created", "x");
  const args = (fields: Record<string, string>) => Object.entries(fields).flat();
  const routedId = String(
    await client.sendCommand([
      "XADD",
      "s",
      "*",
      ...args(base),
      "blob",
      Buffer.from(binary),
      Buffer.from(binaryName),
      "v",
      "dup",
      "1",
      "dup",
      "2",
    ]),
  );
  // No `event`: malformed, dead-lettered at once.
  const deadId = String(
    await client.sendCommand([
      "XADD",
      "s",
      "*",
      "payload",
      "{}",
      "blob",
      Buffer.from(binary),
      "dup",
      "a",
      "dup",
      "b",
    ]),
  );
  await startConsumer(cleanup, redis, { ROUTES: "order.*=>out" });
  await waitFor(async () => await xlen(client, "out") === 1 && await xlen(client, "s:dlq") === 1, {
    message: "one copy in out, one in s:dlq",
  });

  const source = new Map((await rawEntries(client, "s")).map((e) => [e.id, e.fields]));
  const [copy] = await rawEntries(client, "out");
  const original = source.get(routedId)!;
  const headersAt = original.indexOf(hex("headers"));
  assertEquals(copy.fields.length, original.length);
  copy.fields.forEach((v, i) => {
    if (i !== headersAt + 1) assertEquals(v, original[i], `forwarded field ${i}`);
  });
  assertEquals(copy.fields.slice(-6), [
    hex(binaryName),
    hex("v"),
    hex("dup"),
    hex("1"),
    hex("dup"),
    hex("2"),
  ]);
  assert(copy.fields.includes(hex(binary)), "binary value kept");

  const [dead] = await rawEntries(client, "s:dlq");
  const deadOriginal = source.get(deadId)!;
  assertEquals(dead.fields.slice(0, deadOriginal.length), deadOriginal, "dead-letter copy");
});

Deno.test("a consumer paused past CLAIM_IDLE_MS under CPU load never claims its own running entry", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  // Two busy processes saturate both cores for the whole test.
  for (let i = 0; i < 2; i++) {
    const burner = new Deno.Command(Deno.execPath(), {
      args: ["eval", "for (;;) {}"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    cleanup.add(async () => {
      try {
        burner.kill("SIGKILL");
      } catch { /* gone already */ }
      await burner.status;
    });
  }
  const g = gate();
  const runs: number[] = [];
  const registry = new HandlerRegistry().fallback(async (_e, ctx) => {
    runs.push(ctx.deliveries);
    await g.promise;
  });
  await startConsumer(cleanup, redis, { CLAIM_IDLE_MS: "300" }, registry);
  const id = await xadd(client, "s", wireEntry("test.gated", "a"));
  await waitFor(() => runs.length === 1, { message: "the handler runs" });
  const stats = await redis.client();
  const xpendingCalls = () => commandStat(stats, "xpending");
  for (let pause = 0; pause < 3; pause++) {
    // The whole process stops for five times CLAIM_IDLE_MS (as a GC pause or SIGSTOP would):
    // when it resumes, the claim loop may well run before the keep-alive.
    const until = Date.now() + 1500;
    while (Date.now() < until) { /* paused */ }
    const before = await xpendingCalls();
    await waitFor(async () => await xpendingCalls() >= before + 8, { message: "claim rounds" });
  }
  const [pending] = await pendingEntries(client, "s", GROUP);
  assertEquals({ id: pending.id, consumer: pending.consumer, deliveries: pending.deliveries }, {
    id,
    consumer: "c1",
    deliveries: 1,
  });
  g.open();
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
  assertEquals(runs, [1], "run once, on its first delivery");
});

Deno.test("start() retries while a key of the wrong type is in the way and consumes once it is gone", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await client.set("s", "in the way");
  const config = testConfig(redis);
  const connection = new ConnectionManager({ redis: config.redis, clientName: "t" });
  cleanup.add(() => connection.close());
  await connection.connect();
  const handled: string[] = [];
  const consumer = new StreamConsumer({
    settings: { ...consumerSettings(config), statsIntervalMs: 100 },
    connection,
    registry: new HandlerRegistry().fallback((e) => void handled.push(e.id)),
    router: new Router([]),
  });
  cleanup.add(() => consumer.stop(Date.now() + 10_000));
  let started = false;
  const starting = consumer.start().then(() => (started = true));
  const failedGroupCreations = () => commandStat(client, "xgroup|create", "failed_calls");
  await waitFor(async () => await failedGroupCreations() >= 2, { message: "two failed tries" });
  assert(!started && !consumer.status().active, "not started while the key is in the way");
  await client.del("s");
  await waitFor(() => started, { message: "start() resolves once the key is gone" });
  await starting;
  const id = await xadd(client, "s", wireEntry("test.after", "a"));
  await waitFor(() => handled.includes(id), { message: "consumes" });
  await waitFor(() => consumer.status().active, { message: "active" });
});

Deno.test("dead letters count from zero and failing background loops are counted", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const admin = await redis.client();
  // A user that may do everything but XTRIM: the trim loop fails on every turn.
  await admin.sendCommand(["ACL", "SETUSER", "svc", "on", ">pw", "~*", "&*", "+@all", "-xtrim"]);
  const config = testConfig(redis, {
    REDIS_USER: "svc",
    REDIS_PW: "pw",
    STREAM: "s,t",
    STREAM_RETENTION_MS: "1000",
  });
  const connection = new ConnectionManager({ redis: config.redis, clientName: "t" });
  cleanup.add(() => connection.close());
  await connection.connect();
  const metrics = new Metrics({ processMetrics: false });
  const consumer = new StreamConsumer({
    settings: consumerSettings(config),
    connection,
    registry: new HandlerRegistry(),
    router: new Router([]),
    metrics,
  });
  cleanup.add(() => consumer.stop(Date.now() + 10_000));
  const text0 = (await metrics.render()).body;
  assertStringIncludes(text0, 'stream_dead_letters_total{stream="s"} 0');
  assertStringIncludes(text0, 'stream_dead_letters_total{stream="t"} 0');
  await consumer.start();
  await xadd(admin, "s", { payload: "{}" }); // malformed
  await waitFor(async () => await xlen(admin, "s:dlq") === 1, { message: "a dead letter" });
  await waitFor(async () => {
    const text = (await metrics.render(Date.now() + 10_000)).body;
    return text.includes('stream_dead_letters_total{stream="s"} 1') &&
      /stream_loop_errors_total\{loop="trim"\} [1-9]/.test(text);
  }, { message: "one dead letter and trim failures counted" });
});

Deno.test("lag is 0 for a group that read everything of a stream trimmed by its producer (Redis 7.0 reports more)", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await createGroup(client, "s", GROUP);
  for (let i = 0; i < 100; i++) await xadd(client, "s", wireEntry("test.before", `a${i}`));
  const early = await readAsGhost(client, "s", GROUP, "early", 100);
  await client.sendCommand(["XACK", "s", GROUP, ...early]);
  // A producer that trims to 100 entries on every publish, while nobody reads.
  for (let i = 0; i < 300; i++) {
    await xadd(client, "s", wireEntry("test.trimmed", `b${i}`));
    await client.sendCommand(["XTRIM", "s", "MAXLEN", "100"]);
  }
  const { consumer } = await startConsumer(cleanup, redis);
  await waitFor(async () => {
    const [g] = await groups(client, "s");
    return g.lastDeliveredId ===
      (await client.sendCommand(["XREVRANGE", "s", "+", "-", "COUNT", "1"]) as [string][])[0][0];
  }, { message: "the group read everything" });
  const [reported] = await groups(client, "s");
  const stats = await waitFor(() => {
    const s = consumer.status().streams[0];
    return s.lastDeliveredId === reported.lastDeliveredId ? s : undefined;
  }, { message: "stats read after the last delivery" });
  assertEquals(stats.lag, 0, `Redis reports lag ${reported.lag}`);
  assert(stats.length === 100, `length ${stats.length}`);
});
