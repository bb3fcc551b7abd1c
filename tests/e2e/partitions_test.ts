/**
 * Partitioned streams end to end (README "Partitioned streams"): three spawned `main.ts`
 * processes share 8 partitions of one stream on a real redis-server. The lease keys show an
 * even spread; one process is killed with SIGKILL and the others take over its partitions
 * once its leases lapse; a fourth joins and gets its share; meanwhile a producer keeps
 * writing, and the forwarded output (`ROUTES='*=>out'`) holds every entry once with each
 * aggregate's entries in stream order. The trigger writes to the FNV-1a partition;
 * `GET /admin/partitions` and `stream_partitions_owned` report the owners.
 *
 * @module
 */

import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import type { RedisClient } from "../support/redis_server.ts";
import { serviceEnvFor, type ServiceProcess, startService } from "../support/service.ts";
import { readStream, wireEntry, xadd, xlen } from "../support/streams.ts";
import { waitFor } from "../support/wait.ts";
import {
  assertInOrder,
  evenOver,
  killAndJoin,
  leaseOwners,
  startProducer,
} from "../support/partition_scenario.ts";
import { KeySchema, partitionKey, partitionKeys, partitionOf } from "../../src/stream/keys.ts";

const N = 8;
const GROUP = "parts";
const LEASE_MS = 2000;
/** A rebalance's deadline: the lease time plus a few seconds (and start-up on a busy box). */
const REBALANCE_MS = LEASE_MS + 13_000;
const KEYS = new KeySchema({ group: GROUP });

const owners = (client: RedisClient) => leaseOwners(client, partitionKeys("orders", N), GROUP);

Deno.test("three processes share 8 partitions; a SIGKILL and a join rebalance; order per aggregate kept", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const start = async (name: string): Promise<ServiceProcess> =>
    cleanup.use(
      await startService({
        env: serviceEnvFor(redis, "parts-e2e", name, {
          STREAM: "orders",
          CONSUMER_GROUP: GROUP,
          STREAM_START_ID: "0",
          STREAM_PARTITIONS: String(N),
          PARTITION_LEASE_MS: String(LEASE_MS),
          CLAIM_IDLE_MS: "1000",
          ROUTES: "*=>out",
        }),
      }),
    );

  // A producer writing to the partitions all along, each aggregate numbered 1, 2, 3, ...
  const producer = startProducer(async (agg, n) => {
    await xadd(client, partitionKey("orders", partitionOf(agg, N)), wireEntry("t", agg, { n }));
  });
  cleanup.add(() => producer.stop().catch(() => {}));

  const p1 = await start("p1");
  const p2 = await start("p2");
  const p3 = await start("p3");
  await waitFor(async () => evenOver(await owners(client), ["p1", "p2", "p3"]), {
    timeoutMs: REBALANCE_MS,
    message: "8 partitions spread over p1, p2, p3",
  });

  // The admin route and the gauge show the same owners.
  const report = await p1.request("/admin/partitions");
  assertEquals(report.status, 200, report.text);
  const body = report.json as {
    partitions: number;
    streams: { stream: string; partitions: { key: string; owner: string | null }[] }[];
  };
  assertEquals(body.partitions, N);
  assertEquals(body.streams[0].partitions.map((p) => p.key), partitionKeys("orders", N));
  // The gauge follows the leases within a turn.
  const metrics = await waitFor(async () => {
    const text = (await p1.request("/metrics")).text;
    const owned = text.match(/^stream_partitions_owned\{stream="orders"\} (\d+)$/m);
    const leased = (await owners(client)).filter((o) => o === "p1").length;
    return owned && Number(owned[1]) === leased && leased >= 2 ? text : undefined;
  }, { message: "stream_partitions_owned of p1 = its leases" });
  for (const key of partitionKeys("orders", N)) {
    // The lag and pending gauges are per partition key.
    const labels = `{stream="${key}",group="${GROUP}"}`;
    assert(metrics.includes(`stream_consumer_lag${labels}`), `lag of ${key}`);
    assert(metrics.includes(`stream_pending_messages${labels}`), `pending of ${key}`);
  }

  // p2 dies without a word: its leases lapse and p1 and p3 take its partitions over; then p4
  // joins and gets its share. Everything is forwarded once, each aggregate in order.
  const { joined: p4 } = await killAndJoin({
    owners: () => owners(client),
    forwarded: () => xlen(client, "out"),
    producer,
    victim: p2,
    survivors: { p1, p3 },
    join: start,
    rebalanceMs: REBALANCE_MS,
    report: async () => {
      for (const key of partitionKeys("orders", N)) {
        const pending = await client.sendCommand(["XPENDING", key, GROUP]);
        const lease = await client.sendCommand(["GET", KEYS.lease(key)]);
        console.log(key, "lease", lease, "pending", JSON.stringify(pending));
      }
    },
  });
  assertInOrder(await readStream(client, "out"), producer.seq);

  // The trigger writes to the FNV-1a partition of the aggregate.
  for (const aggregateId of ["order-1", "order-2", "customer-77"]) {
    const res = await p4.request("/trigger-test-event", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ event: "order.created", aggregateId }),
    });
    assertEquals(res.status, 200, res.text);
    const { stream, id } = res.json as { stream: string; id: string };
    assertEquals(stream, partitionKey("orders", partitionOf(aggregateId, N)));
    const entries = await readStream(client, stream);
    assert(entries.some((e) => e.id === id), `${id} in ${stream}`);
  }
  for (const svc of [p1, p3, p4]) assertEquals((await svc.stop()).code, 0);
  assertEquals(await owners(client), new Array(N).fill(undefined), "leases released at stop");
});
