/**
 * Exactly-once forwarding across slots on a real local Redis Cluster, through killed processes
 * (README "Forwarding across slots"): the spawned service consumes `{xa}` and forwards every entry
 * to `{xb}:out`, served by another master, through the outbox `{xa}:outbox` and the relay. The
 * service is SIGKILLed three times mid-drain (once restarted under a new `CONSUMER_NAME`, so the
 * dead one's entries are claimed; once under the same name, so it re-reads its own); some kills
 * land between a settle and its relay, or between a relay's copy and its acknowledgement. The
 * target must end with every source entry exactly once, and the outbox empty.
 *
 * Then the source's master is lost with writes its replica never got: the replica is cut off
 * (frozen, link closed) while the service keeps settling into the outbox and the relay keeps
 * copying to the target and deleting outbox entries; the master is killed and the stale replica
 * takes over. The settles it lacks (acknowledgements and copies together) are redone, and the
 * target must still hold each source entry once: checked for a target in the source's slot, and
 * for one in another slot (outbox entries lost with the settles, while the copies the relay made
 * survive on the target's master: the relay's marks are keyed by the source entry). And the
 * target's master lost with copies its replica never got (the relay deletes an outbox entry only
 * once `WAIT` confirmed its copy on a replica of the target's master).
 *
 * @module
 */

import { assert, assertEquals, assertNotEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { clusterTest, routedSender, slotOf, startRedisCluster } from "../support/redis_cluster.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { forwardedSourceIds, isDrained, preload, wireEntry, xlen } from "../support/streams.ts";
import { waitFor } from "../support/wait.ts";

const STREAM = "{xa}";
const OUT = "{xb}:out";
const GROUP = "outbox-e2e";
const N = 3000;

clusterTest(
  "cluster: a ROUTES target in another slot gets every entry exactly once through 3 SIGKILLs",
  {},
  async ({ cleanup, cluster, redis }) => {
    assertNotEquals(slotOf(OUT), slotOf(STREAM));
    assertNotEquals(await cluster.masterOf(OUT), await cluster.masterOf(STREAM));
    const ids = await preload(redis, STREAM, N);

    const start = (name: string): Promise<ServiceProcess> =>
      startService({
        env: {
          ...cluster.env(),
          SERVICE_NAME: "cluster-outbox-e2e",
          CONSUMER_NAME: name,
          CONSUMER_GROUP: GROUP,
          LOG_LEVEL: "INFO",
          STREAM,
          STREAM_START_ID: "0",
          ROUTES: `*=>${OUT}`,
          CLAIM_IDLE_MS: "1000",
          MAX_DELIVERIES: "10",
          BATCH_SIZE: "50",
          CONNECTION_TIMEOUT: "3000",
        },
        readyTimeoutMs: 30_000,
      }).then((svc) => cleanup.use(svc));

    // k0 dies; k1 (a new name) claims k0's entries and dies; k1 again re-reads its own; k1 ends.
    const names = ["k0", "k1", "k1", "k1"];
    let svc: ServiceProcess | undefined;
    let outAtKill = 0;
    for (const [k, name] of names.entries()) {
      svc = await start(name);
      if (k === names.length - 1) break;
      const target = outAtKill + 300 + Math.floor(Math.random() * 400);
      await waitFor(async () => await xlen(redis, OUT) >= target, {
        timeoutMs: 60_000,
        intervalMs: 5,
        message: `${OUT} to reach ${target} entries before kill ${k + 1}`,
      });
      await svc.kill();
      outAtKill = await xlen(redis, OUT);
      assert(outAtKill < N, `kill ${k + 1} came after the drain ended (${outAtKill} forwarded)`);
    }

    try {
      await waitFor(
        async () =>
          await isDrained(redis, STREAM, GROUP) && await xlen(redis, `${STREAM}:outbox`) === 0,
        { timeoutMs: 60_000, intervalMs: 100, message: "source drained and outbox emptied" },
      );
    } catch (err) {
      console.log(svc?.output().split("\n").filter((l) => /WARN|ERROR/.test(l)).join("\n"));
      throw err;
    }
    const out = await forwardedSourceIds(redis, OUT);
    const known = new Set(ids);
    const seen = new Set<string>();
    const dupes = out.filter((id) => seen.has(id) || (seen.add(id), false));
    assertEquals(dupes, [], "no entry forwarded twice");
    assertEquals(out.filter((id) => !known.has(id)), [], "only source entries forwarded");
    assertEquals(out.length, N, "every entry forwarded");
    assertEquals(await xlen(redis, `${STREAM}:dlq`), 0, "nothing dead-lettered");
    assertEquals((await svc?.stop())?.code, 0);
  },
);

/**
 * Consumes `{xc}` forwarding to `out` while the replica of the master of `lose` (the source's or
 * the target's) is cut off, kills that master so the stale replica takes over (on the source: the
 * settles it lacks are redone; on the target: the copies it lacks are gone), and checks that `out`
 * holds each entry of `{xc}` once.
 */
async function lostWritesScenario(out: string, lose: "source" | "target"): Promise<void> {
  const stream = "{xc}";
  const group = "outbox-failover-e2e";
  const total = 1500;
  await using cleanup = new Cleanup();
  const cluster = cleanup.use(await startRedisCluster());
  const client = await cluster.client();
  const redis = routedSender(client);
  assertEquals(
    await cluster.masterOf(out) === await cluster.masterOf(stream),
    out.startsWith(stream),
    out,
  );
  const victim = lose === "source" ? stream : out;
  const master = await cluster.masterOf(victim);
  // Slow handlers (20 ms, 4 at a time): the drain takes seconds, so the cut lands mid-way.
  const ids = await preload(
    redis,
    stream,
    total,
    (i) => wireEntry("diagnostic.sleep", `agg-${i % 50}`, { ms: 20, n: i }),
  );
  // Every entry on the replica before anything is cut off: WAIT on the connection of the XADDs.
  const acked = await client.sendCommand(stream, false, ["WAIT", "1", "10000"]);
  assertEquals(Number(acked), 1, "the replica acknowledged the preload");

  const svc = cleanup.use(
    await startService({
      env: {
        ...cluster.env(),
        SERVICE_NAME: "cluster-outbox-failover-e2e",
        CONSUMER_NAME: "f1",
        CONSUMER_GROUP: group,
        LOG_LEVEL: "INFO",
        STREAM: stream,
        STREAM_START_ID: "0",
        ROUTES: `*=>${out}`,
        DIAGNOSTIC_EVENTS: "true",
        HANDLER_CONCURRENCY: "4",
        BATCH_SIZE: "20",
        CLAIM_IDLE_MS: "2000",
        CONNECTION_TIMEOUT: "2000",
        BLOCK_MS: "1000",
      },
      readyTimeoutMs: 30_000,
    }),
  );
  await waitFor(async () => await xlen(redis, out) >= 200, {
    timeoutMs: 30_000,
    message: `200 entries in ${out} before the cut`,
  });

  // The replica falls behind; settles and relays go on for a while on the master alone.
  const frozen = await cluster.detachReplicas(master);
  try {
    const cut = await xlen(redis, out);
    await waitFor(async () => await xlen(redis, out) >= cut + 200, {
      timeoutMs: 30_000,
      message: `200 more entries in ${out} while the replica is cut off`,
    });
    assert(await xlen(redis, out) < total, "the drain ended before the master was killed");
    await cluster.kill(master);
  } finally {
    for (const r of frozen) await cluster.node(r).resume();
  }
  await cluster.waitFailover(slotOf(victim), master);

  try {
    await waitFor(
      async () =>
        await isDrained(redis, stream, group) && await xlen(redis, `${stream}:outbox`) === 0,
      { timeoutMs: 60_000, intervalMs: 200, message: "source drained and outbox emptied" },
    );
  } catch (err) {
    console.log(svc.output().split("\n").filter((l) => /WARN|ERROR/.test(l)).join("\n"));
    throw err;
  }
  // Retried: right after a failover the test's own client may still route `out` to the dead node.
  const copies = await waitFor(() => forwardedSourceIds(redis, out), {
    message: `XRANGE of ${out}`,
  });
  const seen = new Set<string>();
  const dupes = copies.filter((id) => seen.has(id) || (seen.add(id), false));
  assertEquals(
    dupes.length,
    0,
    `${dupes.length} entries copied twice, e.g. ${dupes.slice(0, 5)}`,
  );
  assertEquals(copies.filter((id) => !ids.includes(id)), [], "only source entries copied");
  const missing = ids.filter((id) => !seen.has(id));
  assertEquals(
    missing.length,
    0,
    `${missing.length} entries never copied, e.g. ${missing.slice(0, 5)}`,
  );
  assertEquals(copies.length, total, "every entry copied");
  assertEquals((await svc.stop()).code, 0);
}

Deno.test({
  name:
    "cluster: the source's master fails over to a replica missing its latest settles; a same-slot target gets each entry once",
  sanitizeOps: false, // node-redis cluster clients keep timers for their topology refresh.
  sanitizeResources: false,
  fn: () => lostWritesScenario("{xc}:out", "source"),
});

Deno.test({
  name:
    "cluster: the source's master fails over to a replica missing its latest settles; an other-slot target gets each entry once",
  // The entries settled while the replica was cut off are settled again on the new master,
  // writing new outbox entries; the relay's marks of the copies already made (on the target's
  // master, which did not fail) are keyed by the source entry, so nothing is copied twice.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => lostWritesScenario("{xd}:out", "source"),
});

Deno.test({
  name:
    "cluster: the target's master fails over to a replica missing the relay's latest copies; each entry is still there once",
  // The copies the relay wrote while the target's replica was cut off are lost with the target's
  // master; their outbox entries stayed, since WAIT never confirmed them, and are relayed again
  // to the new master (the marks were lost with the copies, so they are written once more).
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => lostWritesScenario("{xd}:out", "target"),
});
