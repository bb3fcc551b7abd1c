/**
 * Exactly-once forwarding across slots (README "Redis Cluster and partitioned streams") on a real
 * single redis-server, with the consumer's cross-slot mode on (`outboxAcrossSlots`, set by the
 * service with REDIS_CLUSTER_NODES only): `ROUTES` copies and `ctx.publish` entries to streams in
 * another slot go through the source's outbox and the relay, and reach their targets once, the
 * copies byte-exact; targets in the source's slot are written directly; a relay that died between
 * the copy and its acknowledgement leaves a mark that keeps the next relay from copying again; a
 * target of the wrong type keeps its copies in the outbox until it is fixed; partitioned streams
 * relay each partition's outbox, in order per aggregate also when partitions change owner.
 *
 * @module
 */

import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import {
  createGroup,
  pendingCount,
  readAsGhost,
  readStream,
  wireEntry,
  xadd,
  xlen,
} from "../support/streams.ts";
import { waitFor } from "../support/wait.ts";
import { GROUP, type RunningConsumer, startConsumer } from "../support/in_process_consumer.ts";
import { HandlerRegistry } from "../../src/stream/handlers.ts";
import { registerDiagnosticHandlers } from "../../src/stream/diagnostic_handlers.ts";
import {
  KeySchema,
  partitionKey,
  partitionKeys,
  partitionOf,
  sameSlot,
} from "../../src/stream/keys.ts";
import { nodeCommander } from "../../src/redis/commander.ts";
import { decodeRelay, encodeRelay, outboxFields } from "../../src/stream/consumer/outbox_codec.ts";
import { RELAY } from "../../src/stream/consumer/relay_script.ts";
import type { RedisClient } from "../support/redis_server.ts";

const KEYS = new KeySchema({ group: GROUP });
const CROSS = { outboxAcrossSlots: true };
const RELAY_GROUP = `${GROUP}:relay`;

function diagnostics(): HandlerRegistry {
  const registry = new HandlerRegistry();
  registerDiagnosticHandlers(registry);
  return registry;
}

/** XINFO STREAM's entries-added of `stream`: every entry ever written to it. */
async function entriesAdded(client: RedisClient, stream: string): Promise<number> {
  const flat = await client.sendCommand(["XINFO", "STREAM", stream]) as unknown[];
  const i = flat.indexOf("entries-added");
  return Number(flat[i + 1]);
}

/** The source id a forwarded copy or an emitted entry names in its headers. */
function sourceOf(fields: Record<string, string>): string {
  const h = JSON.parse(fields.headers) as Record<string, string>;
  return h.sourceId ?? h.causationId;
}

Deno.test("copies to streams in another slot go through the outbox and arrive once, byte-exact", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  assert(!sameSlot("s", "out") && !sameSlot("s", "emitted"), "targets in other slots");
  assert(sameSlot("s", "{s}.out"), "a target in the source's slot");
  await createGroup(client, "s", GROUP);
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) {
    // Every other one fails its first delivery: what it emitted then is dropped.
    const payload = { count: 2, stream: "emitted", failTimes: i % 2 };
    ids.push(await xadd(client, "s", { ...wireEntry("diagnostic.emit", `a${i}`, payload), x: "" }));
  }
  await startConsumer(
    cleanup,
    redis,
    { DIAGNOSTIC_EVENTS: "true", ROUTES: "diagnostic.emit=>out,*=>{s}.out" },
    diagnostics(),
    CROSS,
  );
  await waitFor(
    async () => await xlen(client, "out") === 6 && await xlen(client, "emitted") === 12,
    {
      message: "6 forwarded, 12 emitted",
    },
  );
  await waitFor(
    async () =>
      await pendingCount(client, "s", GROUP) === 0 && await xlen(client, "s:outbox") === 0,
    { message: "acknowledged, outbox emptied" },
  );
  assertEquals(await pendingCount(client, "s:outbox", RELAY_GROUP), 0);
  // 6 forwards and 12 emits went through the outbox; the same-slot target did not.
  assertEquals(await entriesAdded(client, "s:outbox"), 18);
  const out = await readStream(client, "out");
  const direct = new Map((await readStream(client, "{s}.out")).map((e) => [sourceOf(e.fields), e]));
  assertEquals(direct.size, 6);
  assertEquals(new Set(out.map((e) => sourceOf(e.fields))), new Set(ids));
  for (const e of out) {
    // Byte-exact: the same fields in the same order as the copy written directly.
    assertEquals(Object.entries(e.fields), Object.entries(direct.get(sourceOf(e.fields))!.fields));
  }
  const emitted = await readStream(client, "emitted");
  const seen = new Set(emitted.map((e) => `${sourceOf(e.fields)}/${e.fields.payload}`));
  assertEquals(seen.size, 12, "each emitted entry once");
  // Everything settled and relayed: a few more loops change nothing.
  await waitFor(async () => await pendingCount(client, "s:outbox", RELAY_GROUP) === 0, {
    message: "relay group empty",
  });
  assertEquals(await xlen(client, "out"), 6);
});

Deno.test("a relay that died after the copy and before the acknowledgement never copies twice", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const copy = Object.entries(wireEntry("order.created", "a1")).flat();
  // Copies of the entries 1-0 and 2-0 of "s" (the outbox of "s" is "s:outbox").
  const copied = await xadd(
    client,
    "s:outbox",
    Object.fromEntries(pairsOf(outboxFields("out", "1-0", 0, copy))),
  );
  const notYet = await xadd(
    client,
    "s:outbox",
    Object.fromEntries(pairsOf(outboxFields("out", "2-0", 0, copy))),
  );
  await createGroup(client, "s:outbox", RELAY_GROUP);
  assertEquals(await readAsGhost(client, "s:outbox", RELAY_GROUP, "dead", 2), [copied, notYet]);
  // The dead relay ran the script for the first entry (copy and mark), then died.
  const mark = KEYS.relayMark("out", "s", "1-0", 0);
  const run = async () => {
    const { keys, args } = encodeRelay("out", [mark], [copy], 60);
    return decodeRelay(await RELAY.run(nodeCommander(client), keys, args), 1);
  };
  assertEquals(await run(), ["copied"]);
  // Run again (a retry of the same relay): the mark is there, nothing written.
  assertEquals(await run(), ["already"]);
  assertEquals(await xlen(client, "out"), 1);
  assertEquals(
    await client.get(mark),
    (await readStream(client, "out"))[0].id,
    "the mark names the copy",
  );
  assert(await client.ttl(mark) > 0, "the mark expires");

  // A live relay claims the dead one's idle entries (CLAIM_IDLE_MS 1000): the first is found
  // copied already, the second is copied; both leave the outbox.
  await startConsumer(cleanup, redis, { STREAM: "s" }, new HandlerRegistry(), CROSS);
  await waitFor(async () => await xlen(client, "s:outbox") === 0, { message: "outbox emptied" });
  assertEquals(await pendingCount(client, "s:outbox", RELAY_GROUP), 0);
  const out = await readStream(client, "out");
  assertEquals(out.length, 2);
  for (const e of out) assertEquals(Object.entries(e.fields).flat(), copy);
});

Deno.test("copies to a target of the wrong type stay in the outbox until it is fixed", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await client.set("out", "not a stream");
  await createGroup(client, "s", GROUP);
  const id = await xadd(client, "s", wireEntry("order.created", "a1"));
  await startConsumer(cleanup, redis, { ROUTES: "*=>out" }, new HandlerRegistry(), CROSS);
  // Settled (the outbox is in the source's slot and a stream), the copy waits in the outbox.
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "acknowledged",
  });
  await waitFor(async () => await pendingCount(client, "s:outbox", RELAY_GROUP) === 1, {
    message: "the copy read by the relay and left pending",
  });
  assertEquals(await xlen(client, "s:outbox"), 1);
  await client.del("out");
  // Retried when it has been idle CLAIM_IDLE_MS (1000).
  await waitFor(async () => await xlen(client, "s:outbox") === 0, { message: "relayed" });
  const out = await readStream(client, "out");
  assertEquals(out.map((e) => sourceOf(e.fields)), [id]);
});

Deno.test("partitioned streams relay each partition's outbox, in order per aggregate", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const env = {
    STREAM: "orders",
    STREAM_PARTITIONS: "2",
    PARTITION_LEASE_MS: "2000",
    ROUTES: "*=>out",
  };
  const keys = partitionKeys("orders", 2);
  assert(keys.every((k) => !sameSlot(k, "out")), "the target is in another slot");
  const sent: string[] = [];
  for (let i = 0; i < 40; i++) {
    const fields = wireEntry("order.created", `a${i % 4}`, { i });
    // The partition of aggregates a0..a3 by FNV-1a mod 2 does not matter: both are relayed.
    for (const key of keys) {
      if (i % 2 === keys.indexOf(key)) sent.push(`${key}/${await xadd(client, key, fields)}`);
    }
  }
  await startConsumer(cleanup, redis, env, new HandlerRegistry(), CROSS);
  await waitFor(async () => await xlen(client, "out") === 40, { message: "40 forwarded" });
  await waitFor(async () => {
    for (const k of keys) if (await xlen(client, KEYS.outbox(k)) !== 0) return false;
    return true;
  }, { message: "both outboxes emptied" });
  const out = await readStream(client, "out");
  const got = out.map((e) => {
    const h = JSON.parse(e.fields.headers) as Record<string, string>;
    return `${h.sourceStream}/${h.sourceId}`;
  });
  assertEquals(new Set(got), new Set(sent));
  // Per source partition, the copies are in the partition's order.
  for (const k of keys) {
    const mine = got.filter((g) => g.startsWith(`${k}/`));
    assertEquals(mine, sent.filter((g) => g.startsWith(`${k}/`)));
  }
});

/** `[k1, v1, k2, v2, …]` as pairs. */
function pairsOf(flat: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
  return out;
}

Deno.test("partitions changing owner keep each aggregate's copies in order through the outboxes", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const n = 4;
  const env = {
    STREAM: "orders",
    STREAM_PARTITIONS: String(n),
    PARTITION_LEASE_MS: "2000",
    ROUTES: "*=>out",
  };
  const seq = new Map<string, number>();
  const publish = async (count: number) => {
    for (let i = 0; i < count; i++) {
      const agg = `agg-${i % 12}`;
      const next = (seq.get(agg) ?? 0) + 1;
      seq.set(agg, next);
      const key = partitionKey("orders", partitionOf(agg, n));
      await xadd(client, key, wireEntry("t", agg, { n: next }));
    }
  };
  const holders = async () => {
    const out: string[] = [];
    for (const key of partitionKeys("orders", n)) {
      out.push(String(await client.get(KEYS.lease(key))));
    }
    return out;
  };
  const start = (name: string): Promise<RunningConsumer> =>
    startConsumer(cleanup, redis, { ...env, CONSUMER_NAME: name }, new HandlerRegistry(), CROSS);
  await publish(100);
  const c1 = await start("c1");
  const c2 = await start("c2");
  await waitFor(async () => new Set(await holders()).size === 2, {
    timeoutMs: 15_000,
    message: "partitions spread over c1 and c2",
  });
  await publish(100);
  // c1 stops: c2 takes its partitions (and their outboxes); then c3 joins and takes a share.
  assert(await c1.stop(), "c1 settled everything");
  await publish(100);
  await waitFor(async () => (await holders()).every((h) => h === "c2"), {
    timeoutMs: 15_000,
    message: "every partition on c2",
  });
  await start("c3");
  await publish(100);
  await waitFor(async () => new Set(await holders()).size === 2, {
    timeoutMs: 15_000,
    message: "partitions spread over c2 and c3",
  });
  await publish(100);
  const out = await waitFor(async () => {
    const entries = await readStream(client, "out");
    return entries.length >= 500 ? entries : undefined;
  }, { timeoutMs: 30_000, message: "500 forwarded" });
  assertEquals(out.length, 500, "each entry forwarded once");
  const last = new Map<string, number>();
  for (const e of out) {
    const agg = e.fields.aggregateId;
    const got = (JSON.parse(e.fields.payload) as { n: number }).n;
    assertEquals(got, (last.get(agg) ?? 0) + 1, `order of ${agg}`);
    last.set(agg, got);
  }
  let added = 0;
  for (const key of partitionKeys("orders", n)) {
    added += await entriesAdded(client, KEYS.outbox(key));
  }
  assertEquals(added, 500, "every copy went through an outbox");
  assert(c2.consumer.partitionsHeld().size >= 1, "c2 still holds its share");
});
