/**
 * Exactly-once forwarding across slots on a real local Redis Cluster, through killed processes
 * (README "Forwarding across slots"): the spawned service consumes `{xa}` and forwards every entry
 * to `{xb}:out`, served by another master, through the outbox `{xa}:outbox` and the relay. The
 * service is SIGKILLed three times mid-drain (once restarted under a new `CONSUMER_NAME`, so the
 * dead one's entries are claimed; once under the same name, so it re-reads its own); some kills
 * land between a settle and its relay, or between a relay's copy and its acknowledgement. The
 * target must end with every source entry exactly once, and the outbox empty.
 *
 * @module
 */

import { assert, assertEquals, assertNotEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { routedSender, slotOf, startRedisCluster } from "../support/redis_cluster.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { isDrained, preload, readStream, xlen } from "../support/streams.ts";
import { waitFor } from "../support/wait.ts";

const STREAM = "{xa}";
const OUT = "{xb}:out";
const GROUP = "outbox-e2e";
const N = 3000;

Deno.test({
  name: "cluster: a ROUTES target in another slot gets every entry exactly once through 3 SIGKILLs",
  sanitizeOps: false, // node-redis cluster clients keep timers for their topology refresh.
  sanitizeResources: false,
  fn: async () => {
    await using cleanup = new Cleanup();
    const cluster = cleanup.use(await startRedisCluster());
    const redis = routedSender(await cluster.client());
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
    const out = (await readStream(redis, OUT)).map((e) =>
      JSON.parse(e.fields.headers).sourceId as string
    );
    const known = new Set(ids);
    const seen = new Set<string>();
    const dupes = out.filter((id) => seen.has(id) || (seen.add(id), false));
    assertEquals(dupes, [], "no entry forwarded twice");
    assertEquals(out.filter((id) => !known.has(id)), [], "only source entries forwarded");
    assertEquals(out.length, N, "every entry forwarded");
    assertEquals(await xlen(redis, `${STREAM}:dlq`), 0, "nothing dead-lettered");
    assertEquals((await svc?.stop())?.code, 0);
  },
});
