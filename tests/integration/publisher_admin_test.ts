/**
 * Integration tests of `Publisher` and `StreamAdmin` against a real redis-server: the wire
 * format of published entries (timestamp in TIMEZONE with its offset), publishing once per
 * idempotency key, the per-stream report (length, groups, consumers, pending, lag, dead-letter
 * length) and replaying dead-letter entries into their stream.
 *
 * @module
 */

import { assert, assertEquals, assertMatch, assertRejects } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { createGroup, readAsGhost, readStream, wireEntry, xadd, xlen } from "../support/streams.ts";
import { testConfig } from "../support/in_process_consumer.ts";
import { ConnectionManager } from "../../src/redis/connection.ts";
import { parseEntry } from "../../src/stream/entry.ts";
import { Publisher } from "../../src/stream/publisher.ts";
import { StreamAdmin } from "../../src/stream/admin.ts";
import { DEAD_LETTER_FIELDS } from "../../src/stream/keys.ts";
import { readGroupFigures } from "../../src/stream/group_ops.ts";

async function connect(cleanup: Cleanup, redis: RedisServer): Promise<ConnectionManager> {
  const connection = new ConnectionManager({ redis: testConfig(redis).redis, clientName: "t" });
  cleanup.add(() => connection.close());
  await connection.connect();
  return connection;
}

Deno.test("Publisher.publish() writes the wire format with a zoned timestamp", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const connection = await connect(cleanup, redis);
  const publisher = new Publisher({
    connection,
    serviceName: "pub-svc",
    timezone: "Asia/Kolkata", // +05:30 all year: no DST to race against
  });
  const result = await publisher.publish({
    stream: "p",
    event: "order.created",
    aggregateId: "o-1",
    payload: { amount: 5, tags: ["a"] },
    correlationId: "corr-1",
    headers: { traceparent: "00-abc-def-01" },
  });
  assertEquals(result.published, true);
  assertEquals(result.stream, "p");
  assertEquals(result.event, "order.created");
  assertEquals(result.aggregateId, "o-1");
  assertEquals(result.correlationId, "corr-1");
  const [entry] = await readStream(client, "p");
  assertEquals(entry.id, result.id);
  const f = entry.fields;
  assertEquals(f.event, "order.created");
  assertEquals(f.aggregateId, "o-1");
  assertEquals(JSON.parse(f.payload), { amount: 5, tags: ["a"] });
  assertEquals(f.serviceName, "pub-svc");
  assertEquals(f.mimeType, "application/json");
  assertEquals(JSON.parse(f.headers), { traceparent: "00-abc-def-01", correlationId: "corr-1" });
  assertMatch(f.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+05:30$/);
  const skew = Math.abs(Date.parse(f.timestamp) - Number(entry.id.split("-")[0]));
  assert(skew < 60_000, `timestamp ${f.timestamp} vs id ${entry.id}`);
  const parsed = parseEntry("p", entry.id, f);
  assertEquals(parsed.headers.correlationId, "corr-1");

  const utc = new Publisher({ connection, serviceName: "pub-svc" });
  const second = await utc.publish({
    stream: "p",
    event: "e",
    aggregateId: "o-2",
    payload: {},
    correlationId: "corr-2",
  });
  const [, latest] = await readStream(client, "p");
  assertEquals(latest.id, second.id);
  assertMatch(latest.fields.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
});

Deno.test("Publisher.publish() publishes once per idempotency key", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const connection = await connect(cleanup, redis);
  const publisher = new Publisher({ connection, serviceName: "pub-svc", dedupTtlS: 120 });
  const request = {
    stream: "p",
    event: "order.created",
    aggregateId: "o-1",
    payload: { n: 1 },
    correlationId: "corr-1",
    idempotencyKey: "idem-1",
  };
  const first = await publisher.publish(request);
  const repeat = await publisher.publish({
    ...request,
    event: "other.event",
    aggregateId: "o-9",
    payload: { n: 2 },
    correlationId: "corr-2",
  });
  assertEquals(first.published, true);
  assertEquals(repeat, { ...first, published: false });
  assertEquals(await xlen(client, "p"), 1);
  const [entry] = await readStream(client, "p");
  assertEquals(entry.id, first.id);
  assertEquals(JSON.parse(entry.fields.headers).idempotencyKey, "idem-1");
  const ttl = Number(await client.ttl("pub-svc:idempotency:idem-1"));
  assert(ttl > 110 && ttl <= 120, `TTL ${ttl}`);

  const other = await publisher.publish({ ...request, idempotencyKey: "idem-2" });
  assertEquals(other.published, true);
  assert(other.id !== first.id);
  assertEquals(await xlen(client, "p"), 2);
});

Deno.test("StreamAdmin.report() gives length, groups, consumers, pending, lag and DLQ length", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const connection = await connect(cleanup, redis);
  const admin = new StreamAdmin({ connection, dlqFor: (s) => `${s}:dlq` });
  await createGroup(client, "r", "g");
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push(await xadd(client, "r", wireEntry("test.r", "a")));
  assertEquals(await readAsGhost(client, "r", "g", "worker", 2), ids.slice(0, 2));
  await xadd(client, "r:dlq", { ...wireEntry("test.r", "a"), error: "boom" });
  await xadd(client, "r:dlq", { ...wireEntry("test.r", "a"), error: "boom" });

  const report = await admin.report("r");
  assertEquals(report.stream, "r");
  assertEquals(report.length, 3);
  assertEquals(report.deadLetter, { stream: "r:dlq", length: 2 });
  assertEquals(report.groups.length, 1);
  const [g] = report.groups;
  assertEquals(g.name, "g");
  assertEquals(g.pending, 2);
  assertEquals(g.lag, 1);
  assertEquals(g.lastDeliveredId, ids[1]);
  assertEquals(g.consumers.map((c) => [c.name, c.pending]), [["worker", 2]]);
  assert(g.consumers[0].idleMs >= 0);

  assertEquals(await admin.report("missing"), {
    stream: "missing",
    length: 0,
    groups: [],
    deadLetter: { stream: "missing:dlq", length: 0 },
  });
});

Deno.test("StreamAdmin.report() counts the lag by the consumer's rule when Redis reports none", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const connection = await connect(cleanup, redis);
  const admin = new StreamAdmin({ connection, dlqFor: (s) => `${s}:dlq` });
  await createGroup(client, "r", "g");
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await xadd(client, "r", wireEntry("test.r", "a")));
  assertEquals(await readAsGhost(client, "r", "g", "worker", 1), ids.slice(0, 1));
  await client.sendCommand(["XDEL", "r", ids[2]]);
  const [raw] = await client.sendCommand(["XINFO", "GROUPS", "r"]) as unknown[][];
  assertEquals(raw[raw.indexOf("lag") + 1], null, "Redis itself reports no lag here");
  const [g] = (await admin.report("r")).groups;
  assertEquals(g.lag, 3, "undelivered entries left after the deletion");
  assertEquals((await readGroupFigures(connection, "r", "g", "r:dlq")).lag, g.lag);
});

Deno.test("StreamAdmin.report() rejects on a key of the wrong type instead of reporting no groups", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const connection = await connect(cleanup, redis);
  const admin = new StreamAdmin({ connection, dlqFor: (s) => `${s}:dlq` });
  await client.sendCommand(["SET", "plain", "x"]);
  await assertRejects(() => admin.report("plain"), Error, "WRONGTYPE");
});

Deno.test("StreamAdmin.replay() moves dead letters back without their DLQ fields", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const connection = await connect(cleanup, redis);
  const admin = new StreamAdmin({ connection, dlqFor: () => "dlq" });
  const dead = (source: string, i: number) => {
    const original = { ...wireEntry("test.replay", `a${i}`, { i }), custom: `c${i}` };
    const letter = {
      ...original,
      error: "boom",
      sourceStream: source,
      sourceId: `1-${i}`,
      deliveries: "5",
      consumer: "c1",
      failedAt: new Date().toISOString(),
    };
    return { original, letter };
  };
  const mine = [dead("r", 0), dead("r", 1), dead("r", 2)];
  const foreign = dead("elsewhere", 3);
  await xadd(client, "dlq", mine[0].letter);
  await xadd(client, "dlq", foreign.letter);
  await xadd(client, "dlq", mine[1].letter);
  await xadd(client, "dlq", mine[2].letter);

  const moved = await admin.replay("r", 2);
  assertEquals(moved.length, 2);
  let replayed = await readStream(client, "r");
  assertEquals(replayed.map((e) => e.id), moved);
  assertEquals(replayed.map((e) => e.fields), [mine[0].original, mine[1].original]);
  for (const e of replayed) {
    for (const f of DEAD_LETTER_FIELDS) assert(!(f in e.fields), `${f} kept`);
  }
  let left = await readStream(client, "dlq");
  assertEquals(left.map((e) => e.fields), [foreign.letter, mine[2].letter]);

  assertEquals((await admin.replay("r", 100)).length, 1);
  replayed = await readStream(client, "r");
  assertEquals(replayed.map((e) => e.fields), mine.map((m) => m.original));
  left = await readStream(client, "dlq");
  assertEquals(left.map((e) => e.fields), [foreign.letter]);
  assertEquals(await admin.replay("r", 100), []);
});
