/**
 * Integration tests of the consumer's recovery against a real redis-server, the consumer running
 * in this process: the consumer group destroyed (XGROUP DESTROY, FLUSHALL) under a running
 * consumer, retention trimming of old entries (STREAM_RETENTION_MS), Redis killed and restarted
 * (AOF) under the consumer, and the blocking reads' own connection killed alone (CLIENT KILL).
 *
 * @module
 */

import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { gate, waitFor } from "../support/wait.ts";
import {
  groups,
  pendingCount,
  pendingEntries,
  readStream,
  wireEntry,
  xadd,
  xlen,
} from "../support/streams.ts";
import { GROUP, recordingRegistry, startConsumer } from "../support/in_process_consumer.ts";
import { HandlerRegistry } from "../../src/stream/handlers.ts";

Deno.test("StreamConsumer creates the group again when it disappears (NOGROUP)", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const { registry, handled } = recordingRegistry();
  const { consumer } = await startConsumer(cleanup, redis, { STREAM_START_ID: "$" }, registry);
  const first = await xadd(client, "s", wireEntry("test.a", "a"));
  await waitFor(() => handled.includes(first), { message: "first entry handled" });

  const losses: [string, string[]][] = [
    ["XGROUP DESTROY", ["XGROUP", "DESTROY", "s", GROUP]],
    ["FLUSHALL", ["FLUSHALL"]],
  ];
  for (const [what, command] of losses) {
    await client.sendCommand(command);
    await waitFor(async () => (await groups(client, "s")).some((g) => g.name === GROUP), {
      message: `group created again after ${what}`,
    });
    const next = await xadd(client, "s", wireEntry("test.a", "a"));
    await waitFor(() => handled.includes(next), { message: `entry after ${what} handled` });
    await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
      message: "XPENDING 0",
    });
  }
  assertEquals(handled.length, 3, "each entry handled once");
  assert(consumer.status().active);
});

Deno.test("StreamConsumer trims entries older than STREAM_RETENTION_MS", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  // 500 entries an hour old (5 macro nodes of 100, so MINID ~ can drop whole nodes), one new.
  const old = Date.now() - 3_600_000;
  const adds: Promise<string>[] = [];
  for (let i = 0; i < 500; i++) {
    adds.push(xadd(client, "s", wireEntry("test.old", "a"), `${old + i}-0`));
  }
  await Promise.all(adds);
  const fresh = await xadd(client, "s", wireEntry("test.new", "a"));
  const handled = new Set<string>();
  const registry = new HandlerRegistry().fallback((e) => {
    handled.add(e.id);
  });
  await startConsumer(cleanup, redis, { STREAM_RETENTION_MS: "2000" }, registry);
  const entries = await waitFor(async () => {
    const all = await readStream(client, "s");
    return all.length <= 101 ? all : undefined;
  }, { message: "old entries trimmed" });
  assertEquals(entries.at(-1)?.id, fresh, "the new entry is kept");
  // Old entries may be trimmed before they are read; the new one is handled in any case.
  await waitFor(() => handled.has(fresh), { message: "the new entry handled" });
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
});

Deno.test("StreamConsumer reconnects and consumes again after Redis restarts", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis({ appendonly: true }));
  const client = await redis.client();
  const { registry, handled } = recordingRegistry();
  const { connection, consumer } = await startConsumer(cleanup, redis, {}, registry);
  const before = await xadd(client, "s", wireEntry("test.before", "a"));
  await waitFor(() => handled.includes(before), { message: "entry before the kill handled" });

  await redis.kill();
  await waitFor(() => connection.state !== "connected", { message: "connection lost" });
  assert(!consumer.status().active, "inactive while Redis is away");
  await redis.restart();
  await waitFor(() => connection.state === "connected" && consumer.status().active, {
    message: "reconnected and active",
  });
  const after: string[] = [];
  for (let i = 0; i < 5; i++) after.push(await xadd(client, "s", wireEntry("test.after", `b${i}`)));
  await waitFor(() => after.every((id) => handled.includes(id)), {
    message: "entries after the restart handled",
  });
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });
});

Deno.test("StreamConsumer reads on after its blocking connection alone is killed (CLIENT KILL)", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const { registry, handled } = recordingRegistry();
  await startConsumer(cleanup, redis, { BLOCK_MS: "5000" }, registry);
  const before = await xadd(client, "s", wireEntry("test.before", "a"));
  await waitFor(() => handled.includes(before), { message: "entry before the kill handled" });
  // The blocking reader's own connection (`<name>:blk`), killed while it waits in XREADGROUP
  // BLOCK; the command connection stays up.
  const id = await waitFor(blockedReaderId, { message: "the blocking connection blocked" });
  const killed = await client.sendCommand(["CLIENT", "KILL", "ID", id]);
  assertEquals(killed, 1);
  const after: string[] = [];
  for (let i = 0; i < 5; i++) after.push(await xadd(client, "s", wireEntry("test.after", `b${i}`)));
  await waitFor(() => after.every((id) => handled.includes(id)), {
    message: "entries written after the kill handled",
  });
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, {
    message: "XPENDING 0",
  });

  /** The id of the connection named `…:blk` while it is blocked (CLIENT LIST flag `b`). */
  async function blockedReaderId(): Promise<string | undefined> {
    const list = String(await client.sendCommand(["CLIENT", "LIST"]));
    const line = list.split("\n").find((l) => / name=\S*:blk /.test(l) && / flags=\w*b/.test(l));
    return line ? /^id=(\d+) /.exec(line)?.[1] : undefined;
  }
});

Deno.test("StreamConsumer.stop() stops reading, lets running handlers finish and acknowledges them", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const g = gate();
  const started: string[] = [];
  const finished: string[] = [];
  const registry = new HandlerRegistry().fallback(async (e) => {
    started.push(e.id);
    await g.promise;
    finished.push(e.id);
  });
  // MAX_IN_FLIGHT 5: once the 5 handlers run, the reader waits for room, not in an XREADGROUP,
  // so no read that began before stop() can return the entry added after it.
  const { consumer } = await startConsumer(cleanup, redis, { MAX_IN_FLIGHT: "5" }, registry);
  cleanup.add(() => g.open()); // runs before the consumer's stop (reverse order)
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await xadd(client, "s", wireEntry("test.stop", `a${i}`)));
  await waitFor(() => started.length === 5, { message: "5 handlers running" });
  const stopping = consumer.stop(Date.now() + 10_000);
  await waitFor(() => !consumer.status().active, { message: "reading stopped" });
  const afterStop = await xadd(client, "s", wireEntry("test.stop", "late"));
  g.open();
  assertEquals(await stopping, true);
  assertEquals(finished.sort(), [...ids].sort());
  assertEquals(await pendingCount(client, "s", GROUP), 0);
  assertEquals(await client.hGet(`s:checkpoint:${GROUP}`, "c1"), ids[4]);
  assert(!started.includes(afterStop), "an entry added after stop() was read");
});

Deno.test("StreamConsumer.stop() gives up at the deadline and leaves the entry pending", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  let aborted = false;
  let running = false;
  const registry = new HandlerRegistry().fallback(async (_e, { signal }) => {
    running = true;
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
    aborted = true;
    throw new Error("aborted by shutdown");
  });
  const { consumer } = await startConsumer(cleanup, redis, {}, registry);
  const id = await xadd(client, "s", wireEntry("test.stuck", "a"));
  await waitFor(() => running, { message: "handler running" });
  assertEquals(await consumer.stop(Date.now() + 300), false);
  await waitFor(() => aborted, { message: "handler signal aborted" });
  const pending = await pendingEntries(client, "s", GROUP);
  assertEquals(pending.map((p) => [p.id, p.consumer]), [[id, "c1"]]);
  assertEquals(await xlen(client, "s:dlq"), 0);
});

Deno.test("StreamConsumer.stop() leaves an entry failing during shutdown pending and completes", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  let running = false;
  // A handler that fails when the test opens the gate: after stop() began.
  const fail = gate();
  const registry = new HandlerRegistry().fallback(async () => {
    running = true;
    await fail.promise;
    throw new Error("fails while the service stops");
  });
  const { consumer } = await startConsumer(cleanup, redis, { CLAIM_IDLE_MS: "300" }, registry);
  cleanup.add(() => fail.open()); // runs before the consumer's stop (reverse order)
  const id = await xadd(client, "s", wireEntry("test.failing", "a"));
  await waitFor(() => running, { message: "handler running" });
  const stopping = consumer.stop(Date.now() + 10_000);
  await waitFor(() => !consumer.status().active, { message: "reading stopped" });
  fail.open();
  assertEquals(await stopping, true, "stop() waited for a retry that never comes");
  assertEquals(consumer.inFlight, 0);
  const pending = await pendingEntries(client, "s", GROUP);
  assertEquals(pending.map((p) => [p.id, p.consumer, p.deliveries]), [[id, "c1", 1]]);
  assertEquals(await xlen(client, "s:dlq"), 0);
});

Deno.test("StreamConsumer leaves an entry pending when its handler ends after stop() gave up", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  let running = false;
  let done = false;
  // Ignores the abort signal and finishes when the test opens the gate: after stop() gave up
  // and the connection closed.
  const finish = gate();
  const registry = new HandlerRegistry().fallback(async () => {
    running = true;
    await finish.promise;
    done = true;
  });
  const { consumer, connection } = await startConsumer(cleanup, redis, {}, registry);
  cleanup.add(() => finish.open()); // runs before the consumer's stop (reverse order)
  const id = await xadd(client, "s", wireEntry("test.slow", "a"));
  await waitFor(() => running, { message: "handler running" });
  assertEquals(await consumer.stop(Date.now() + 100), false, "stop() gives up at its deadline");
  await connection.close();
  finish.open();
  // (Before the fix, settling then retried without end on microtasks: this wait hung.)
  await waitFor(() => done, { message: "handler done" });
  await waitFor(() => consumer.inFlight === 0, { message: "entry released" });
  const pending = await pendingEntries(client, "s", GROUP);
  assertEquals(pending.map((p) => [p.id, p.consumer]), [[id, "c1"]]);
});

Deno.test("StreamConsumer after a reconnect recovers own pending entries it lost, without recounting held ones", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const gates = new Map([["a", gate()], ["b", gate()]]);
  const calls = new Map<string, number[]>();
  const registry = new HandlerRegistry().fallback(async (e, { deliveries }) => {
    calls.set(e.id, [...(calls.get(e.id) ?? []), deliveries]);
    await gates.get(e.aggregateId)?.promise;
  });
  // Two slots, both taken by blocked handlers: the reader stops reading.
  const { consumer, connection } = await startConsumer(cleanup, redis, {
    STREAM_START_ID: "$",
    MAX_IN_FLIGHT: "2",
  }, registry);
  cleanup.add(() => gates.forEach((g) => g.open())); // before the consumer's stop
  const slowA = await xadd(client, "s", wireEntry("test.slow", "a"));
  const slowB = await xadd(client, "s", wireEntry("test.slow", "b"));
  await waitFor(() => calls.has(slowA) && calls.has(slowB), { message: "both slow entries run" });
  // An entry delivered to this consumer whose reply never reached the process
  // (as when a connection drops mid-reply): pending for c1, held by nobody.
  const lost = await xadd(client, "s", wireEntry("test.lost", "c"));
  await client.sendCommand(["XREADGROUP", "GROUP", GROUP, "c1", "STREAMS", "s", ">"]);

  const before = connection.generation;
  connection.forceReconnect("test");
  await waitFor(() => connection.generation > before && connection.connected, {
    message: "reconnected",
  });
  gates.get("b")!.open(); // a slot frees; slowA is still held
  await waitFor(() => calls.has(lost), { message: "lost entry recovered after the reconnect" });
  assertEquals(calls.get(lost), [2], "the lost entry's second delivery, counted by Redis");
  const pending = await pendingEntries(client, "s", GROUP);
  assertEquals(
    pending.filter((p) => p.id === slowA).map((p) => p.deliveries),
    [1],
    "the held entry's counter is untouched by the recovery",
  );
  gates.get("a")!.open();
  await waitFor(async () => await pendingCount(client, "s", GROUP) === 0, { message: "all acked" });
  assertEquals(calls.get(slowA), [1], "the held entry's handler ran once");
  assertEquals(calls.get(slowB), [1]);
  assert(consumer.status().active);
});

Deno.test("StreamConsumer counts the lag itself when Redis reports none (deleted entries)", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const hold = gate();
  const registry = new HandlerRegistry().fallback(() => hold.promise);
  // One slot, taken by a blocked handler: the rest stays undelivered.
  const { consumer } = await startConsumer(cleanup, redis, {
    STREAM_START_ID: "$",
    MAX_IN_FLIGHT: "1",
  }, registry);
  cleanup.add(() => hold.open()); // runs before the consumer's stop (reverse order)
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await xadd(client, "s", wireEntry("test.lag", `a${i}`)));
  await waitFor(() => consumer.inFlight === 1, { message: "first entry held" });
  await client.sendCommand(["XDEL", "s", ids[2]]);
  const info = await client.sendCommand(["XINFO", "GROUPS", "s"]) as unknown[][];
  const lagIndex = info[0].indexOf("lag");
  assertEquals(info[0][lagIndex + 1], null, "Redis itself reports no lag here");
  await waitFor(() => consumer.status().streams[0].lag === 3, {
    message: "lag counted: 3 undelivered entries left after the deletion",
  });
});
