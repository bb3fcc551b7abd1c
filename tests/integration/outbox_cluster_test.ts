/**
 * Forwarding across slots on a real local Redis Cluster (3 masters, 3 replicas; README "Redis
 * Cluster and partitioned streams"): with REDIS_CLUSTER_NODES the consumer runs in cross-slot
 * mode, so a `ROUTES` target and a `ctx.publish` stream on other masters get their copies through
 * the source's outbox and the relay, each once; the outbox ends empty.
 *
 * @module
 */

import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedisCluster } from "../support/redis_cluster.ts";
import { waitFor } from "../support/wait.ts";
import { wireEntry } from "../support/streams.ts";
import { loadConfig } from "../../src/config.ts";
import { ClusterLink } from "../../src/redis/cluster_link.ts";
import { StreamConsumer } from "../../src/stream/consumer/consumer.ts";
import { consumerSettings } from "../../src/stream/consumer/settings.ts";
import { HandlerRegistry } from "../../src/stream/handlers.ts";
import { registerDiagnosticHandlers } from "../../src/stream/diagnostic_handlers.ts";
import { Router } from "../../src/stream/router.ts";

Deno.test({
  name: "on a cluster, copies to streams on other masters go through the outbox, once each",
  sanitizeOps: false, // node-redis cluster clients keep timers for their topology refresh.
  sanitizeResources: false,
  fn: async () => {
    await using cleanup = new Cleanup();
    const cluster = cleanup.use(await startRedisCluster());
    const [src, out, emitted] = ["{a}", "{b}", "{c}"];
    const masters = await Promise.all([src, out, emitted].map((k) => cluster.masterOf(k)));
    assertEquals(new Set(masters).size, 3, "source, target and emit stream on three masters");
    const config = loadConfig({
      ...cluster.env(),
      SERVICE_NAME: "outbox-cluster",
      STREAM: src,
      CONSUMER_GROUP: "g",
      CONSUMER_NAME: "c1",
      STREAM_START_ID: "0",
      BLOCK_MS: "200",
      CLAIM_IDLE_MS: "1000",
      CONNECTION_TIMEOUT: "5000",
      DIAGNOSTIC_EVENTS: "true",
      ROUTES: `diagnostic.emit=>${out}`,
    });
    const settings = consumerSettings(config);
    assert(settings.outboxAcrossSlots, "cross-slot mode with REDIS_CLUSTER_NODES");
    const link = new ClusterLink({ redis: config.redis, clientName: "outbox-cluster" });
    cleanup.add(() => link.close());
    await link.connect();
    const registry = new HandlerRegistry();
    registerDiagnosticHandlers(registry);
    const consumer = new StreamConsumer({
      settings: { ...settings, statsIntervalMs: 100 },
      connection: link,
      registry,
      router: new Router(config.stream.routes),
    });
    cleanup.add(() => consumer.stop(Date.now() + 10_000));
    const send = (port: number, args: string[]) => cluster.command(port, args);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const fields = wireEntry("diagnostic.emit", `a${i}`, { count: 2, stream: emitted });
      ids.push(
        String(await send(masters[0], ["XADD", src, "*", ...Object.entries(fields).flat()])),
      );
    }
    await consumer.start();
    const len = async (port: number, key: string) => Number(await send(port, ["XLEN", key]));
    await waitFor(
      async () => await len(masters[1], out) === 20 && await len(masters[2], emitted) === 40,
      {
        timeoutMs: 20_000,
        message: "20 forwarded, 40 emitted",
      },
    );
    await waitFor(async () => await len(masters[0], `${src}:outbox`) === 0, {
      timeoutMs: 20_000,
      message: "outbox emptied",
    });
    const copies = await send(masters[1], ["XRANGE", out, "-", "+"]) as [string, string[]][];
    const sources = copies.map(([, f]) => {
      const h = JSON.parse(f[f.indexOf("headers") + 1]) as Record<string, string>;
      return h.sourceId;
    });
    assertEquals(new Set(sources), new Set(ids), "each source entry forwarded once");
    assertEquals(sources.length, 20);
    assertEquals(await len(masters[2], emitted), 40, "each emitted entry once");
  },
});
