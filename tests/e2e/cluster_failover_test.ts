/**
 * A Redis Cluster master killed while the spawned service consumes (README "Redis Cluster",
 * "Delivery guarantees"): a producer appends to `{fo}` in batches and counts an entry only once
 * `WAIT 1` confirmed a replica holds it; the master serving `{fo}`'s slot is killed with SIGKILL,
 * its replica takes over, the killed node comes back as a replica (so `WAIT` confirms again).
 * Every confirmed entry is then handled: forwarded to `{fo}:out` (same slot, `ROUTES`), and no
 * entry is forwarded twice, so the service neither lost its place nor repeated settled work.
 *
 * @module
 */

import { assert, assertEquals, assertNotEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { routedSender, startRedisCluster } from "../support/redis_cluster.ts";
import { startService } from "../support/service.ts";
import { readStream, wireEntry } from "../support/streams.ts";
import { waitFor } from "../support/wait.ts";

const STREAM = "{fo}";
const OUT = "{fo}:out";

Deno.test({
  name:
    "cluster: a master killed while consuming; every WAIT-confirmed entry handled, none forwarded twice",
  sanitizeOps: false, // node-redis cluster clients keep timers for their topology refresh.
  sanitizeResources: false,
  fn: async () => {
    await using cleanup = new Cleanup();
    const cluster = cleanup.use(await startRedisCluster());
    const redis = routedSender(await cluster.client());
    const svc = cleanup.use(
      await startService({
        env: {
          ...cluster.env(),
          SERVICE_NAME: "cluster-failover-e2e",
          CONSUMER_NAME: "f1",
          LOG_LEVEL: "INFO",
          STREAM,
          STREAM_START_ID: "0",
          ROUTES: `*=>${OUT}`,
          CLAIM_IDLE_MS: "2000",
          CONNECTION_TIMEOUT: "2000",
          BLOCK_MS: "1000",
        },
        readyTimeoutMs: 30_000,
      }),
    );

    const producer = cleanup.use(cluster.confirmedProducer({
      stream: STREAM,
      make: (i) => wireEntry("order.updated", `agg-${i % 10}`, { n: i }),
    }));
    const forwarded = async () => {
      const ns = (await readStream(redis, OUT)).map((e) => JSON.parse(e.fields.payload).n);
      return ns as number[];
    };
    await waitFor(
      async () => producer.confirmed.length >= 200 && (await forwarded()).length > 100,
      {
        timeoutMs: 30_000,
        message: "200 confirmed entries and 100 forwarded before the kill",
      },
    );

    const { killed, master } = await cluster.killMasterOf(STREAM);
    assertNotEquals(killed, master);
    await cluster.restart(killed); // Back as a replica of the new master: WAIT confirms again.
    const before = producer.confirmed.length;
    await waitFor(() => producer.confirmed.length >= before + 200, {
      timeoutMs: 45_000,
      message: "200 more confirmed entries after the failover",
    });
    await producer.stop();

    const confirmed = new Set(producer.confirmed);
    let out: number[] = [];
    try {
      await waitFor(async () => {
        out = await forwarded();
        const seen = new Set(out);
        return [...confirmed].every((n) => seen.has(n));
      }, { timeoutMs: 60_000, message: `all ${confirmed.size} confirmed entries forwarded` });
    } catch (err) {
      const seen = new Set(out);
      const missing = [...confirmed].filter((n) => !seen.has(n));
      console.log(`missing ${missing.length}: ${missing.slice(0, 20).join(",")}`);
      console.log(svc.output().split("\n").filter((l) => /WARN|ERROR/.test(l)).join("\n"));
      throw err;
    }
    const dupes = out.filter((n, i) => out.indexOf(n) !== i);
    assertEquals(dupes, [], "no entry forwarded twice");
    // Nothing forwarded that was never produced.
    assert(out.every((n) => n < producer.sent), "forwarded entries were all produced");
    assertEquals((await svc.request("/health/ready")).status, 200);
    assertEquals((await svc.stop()).code, 0);
  },
});
