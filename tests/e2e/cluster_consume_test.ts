/**
 * The spawned service on a real local Redis Cluster (3 masters, 3 replicas; README "Redis
 * Cluster"): two tagged streams `{ca}` and `{cb}` in slots served by different masters are both
 * consumed; entries are forwarded to a target in their own slot (`ROUTES`), a malformed entry and
 * one whose handler always fails go to the stream's own dead-letter stream, the checkpoint hash
 * `<stream>:checkpoint:<group>` holds the last acknowledged id, and `/health/ready` is 200 only
 * while every master answers (a master frozen with SIGSTOP turns it 503, SIGCONT back to 200).
 * With a password on every node (`REDIS_PW`) the service connects to all of them and never logs it.
 *
 * @module
 */

import { assertEquals, assertNotEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { clusterTest, routedSender, slotOf, startRedisCluster } from "../support/redis_cluster.ts";
import { startService } from "../support/service.ts";
import {
  checkpoint,
  forwardedSourceIds,
  readStream,
  wireEntry,
  xadd,
  xlen,
} from "../support/streams.ts";
import { waitFor } from "../support/wait.ts";

const GROUP = "cluster-e2e";
const CONSUMER = "c1";

clusterTest(
  "cluster: two streams in different slots consumed, forwarded, dead-lettered, checkpointed; ready needs every master",
  { nodeTimeoutMs: 60_000 },
  async ({ cleanup, cluster, redis }) => {
    // A long node timeout: the frozen master below must stay a master (no failover).
    const [masterA, masterB] = [await cluster.masterOf("{ca}"), await cluster.masterOf("{cb}")];
    assertNotEquals(masterA, masterB, "the two streams should live on different masters");

    const svc = cleanup.use(
      await startService({
        env: {
          ...cluster.env(),
          SERVICE_NAME: "cluster-e2e",
          CONSUMER_NAME: CONSUMER,
          CONSUMER_GROUP: GROUP,
          LOG_LEVEL: "INFO",
          STREAM: "{ca},{cb}",
          STREAM_START_ID: "0",
          ROUTES: "a.*=>{ca}:out,b.*=>{cb}:out",
          DIAGNOSTIC_EVENTS: "true",
          MAX_DELIVERIES: "2",
          CLAIM_IDLE_MS: "1000",
          CONNECTION_TIMEOUT: "2000",
          BLOCK_MS: "1000",
        },
        readyTimeoutMs: 30_000,
      }),
    );

    // 50 entries each, a malformed one in {ca}, an always-failing one in {cb}.
    const idsA: string[] = [];
    const idsB: string[] = [];
    for (let i = 0; i < 50; i++) {
      idsA.push(await xadd(redis, "{ca}", wireEntry("a.created", `agg-${i % 5}`, { n: i })));
      idsB.push(await xadd(redis, "{cb}", wireEntry("b.created", `agg-${i % 5}`, { n: i })));
    }
    const malformed = await xadd(redis, "{ca}", { aggregateId: "x", payload: "{}" }); // no event
    const failing = await xadd(redis, "{cb}", wireEntry("diagnostic.fail", "f", {}));
    const lastA = await xadd(redis, "{ca}", wireEntry("a.created", "agg-last", { n: 50 }));
    idsA.push(lastA);

    // Forwarded: every entry once, to the target in its own slot.
    for (const [stream, ids] of [["{ca}", idsA], ["{cb}", idsB]] as const) {
      const target = `${stream}:out`;
      assertEquals(slotOf(target), slotOf(stream));
      await waitFor(async () => await xlen(redis, target) >= ids.length, {
        timeoutMs: 30_000,
        message: `${ids.length} entries forwarded to ${target}`,
      });
      assertEquals(
        await forwardedSourceIds(redis, target),
        ids,
        `${target} holds each entry of ${stream} once, in order`,
      );
    }

    // Dead-lettered into each stream's own DLQ.
    const dlqA = await waitFor(async () => {
      const entries = await readStream(redis, "{ca}:dlq");
      return entries.length > 0 ? entries : undefined;
    }, { timeoutMs: 30_000, message: "the malformed entry in {ca}:dlq" });
    assertEquals(dlqA.map((e) => e.fields.sourceId), [malformed]);
    assertEquals(dlqA[0].fields.sourceStream, "{ca}");
    const dlqB = await waitFor(async () => {
      const entries = await readStream(redis, "{cb}:dlq");
      return entries.length > 0 ? entries : undefined;
    }, { timeoutMs: 30_000, message: "the failing entry in {cb}:dlq after 2 deliveries" });
    assertEquals(dlqB.map((e) => e.fields.sourceId), [failing]);
    assertEquals(dlqB[0].fields.deliveries, "2");

    // The checkpoints moved to the last acknowledged id of each stream.
    await waitFor(async () => (await checkpoint(redis, "{ca}", GROUP))[CONSUMER] === lastA, {
      message: `{ca}:checkpoint:${GROUP} at ${lastA}`,
    });
    await waitFor(
      async () => (await checkpoint(redis, "{cb}", GROUP))[CONSUMER] === failing,
      { message: `{cb}:checkpoint:${GROUP} at ${failing}` },
    );
    for (const stream of ["{ca}", "{cb}"]) {
      assertEquals(slotOf(`${stream}:checkpoint:${GROUP}`), slotOf(stream));
      assertEquals(slotOf(`${stream}:dlq`), slotOf(stream));
    }

    // Readiness needs every master, also one that serves neither stream.
    const idle = (await cluster.masters()).find((m) => m !== masterA && m !== masterB) ?? masterA;
    const ready = async () => (await svc.request("/health/ready", { timeoutMs: 5_000 })).status;
    assertEquals(await ready(), 200);
    await cluster.node(idle).pause();
    try {
      await waitFor(async () => await ready() === 503, {
        timeoutMs: 15_000,
        message: `/health/ready 503 while the master on ${idle} is frozen`,
      });
    } finally {
      await cluster.node(idle).resume();
    }
    await waitFor(async () => await ready() === 200, {
      timeoutMs: 20_000,
      message: "/health/ready 200 again once every master answers",
    });

    // Still consuming after that.
    const after = await xadd(redis, "{cb}", wireEntry("b.created", "agg-0", { n: 99 }));
    await waitFor(async () => {
      const out = await readStream(redis, "{cb}:out");
      return out.some((e) => JSON.parse(e.fields.headers).sourceId === after);
    }, { timeoutMs: 20_000, message: `${after} forwarded after the freeze` });
    assertEquals((await svc.stop()).code, 0, svc.output().slice(-2000));
  },
);

Deno.test({
  name:
    "cluster: a password on every node (REDIS_PW): consumed and forwarded, the password never logged",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const password = "cl-s3cret-pw";
    await using cleanup = new Cleanup();
    const cluster = cleanup.use(await startRedisCluster({ password }));
    const redis = routedSender(await cluster.client());
    const svc = cleanup.use(
      await startService({
        env: {
          ...cluster.env(),
          REDIS_PW: password,
          SERVICE_NAME: "cluster-auth-e2e",
          CONSUMER_NAME: "c1",
          LOG_LEVEL: "DEBUG",
          STREAM: "{auth}",
          STREAM_START_ID: "0",
          ROUTES: "*=>{auth}:out",
        },
        readyTimeoutMs: 30_000,
      }),
    );
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await xadd(redis, "{auth}", wireEntry("t", "a", { i })));
    await waitFor(async () => await xlen(redis, "{auth}:out") === ids.length, {
      timeoutMs: 20_000,
      message: "20 entries forwarded to {auth}:out",
    });
    assertEquals((await svc.stop()).code, 0);
    assertEquals(svc.output().includes(password), false, "the password appears in the output");
  },
});
