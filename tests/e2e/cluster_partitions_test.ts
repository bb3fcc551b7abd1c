/**
 * Partitioned streams on a real local Redis Cluster (README "Partitioned streams"), end to end
 * with spawned `main.ts` processes, mirroring `partitions_test.ts` (single Redis):
 *
 * - three instances share the 8 partitions `{orders:0}` … `{orders:7}` (which land on all three
 *   masters): the lease keys `{orders:i}:lease:<group>` show an even spread; one instance is
 *   killed with SIGKILL and the others take its partitions over once its leases lapse; a fourth
 *   joins and gets its share. Meanwhile a producer keeps writing each aggregate's entries numbered
 *   1, 2, 3, … to its FNV-1a partition. A single `ROUTES` target would be in another slot than most
 *   partitions, so each partition forwards to its own `{orders:i}:out` (the producer names the
 *   event `p<i>.…` and the rule `p<i>.*=>{orders:i}:out`): every entry is forwarded once and each
 *   aggregate's entries come out in order. The same with one target `{out}` in another slot than
 *   most partitions (`*=>{out}`, through the outboxes and the relay).
 * - the trigger publishes to the partition FNV-1a (32-bit, UTF-8 bytes of `aggregateId`) picks,
 *   computed here independently of the service's code; `GET /admin/partitions` and
 *   `stream_partitions_owned` show the owner; `POST /admin/dlq/replay` of `S` moves each
 *   partition's dead letters back into that partition.
 *
 * @module
 */

import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import {
  clusterTest,
  type RedisClusterFixture,
  routedSender,
  slotOf,
  startRedisCluster,
} from "../support/redis_cluster.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import {
  readStream,
  type StreamClient,
  type StreamEntry,
  wireEntry,
  xadd,
  xlen,
} from "../support/streams.ts";
import { waitFor } from "../support/wait.ts";
import {
  assertInOrder,
  evenOver,
  killAndJoin,
  leaseOwners,
  startProducer,
} from "../support/partition_scenario.ts";

const N = 8;
const GROUP = "parts";
const LEASE_MS = 2000;
/** A rebalance's deadline: the lease time plus a few seconds (and start-up on a busy box). */
const REBALANCE_MS = LEASE_MS + 18_000;

/** FNV-1a, 32 bits, of the UTF-8 bytes of `text` (offset basis 0x811c9dc5, prime 0x01000193). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

Deno.test("fnv1a() of this test matches the published FNV-1a 32-bit vectors", () => {
  assertEquals(fnv1a(""), 0x811c9dc5);
  assertEquals(fnv1a("a"), 0xe40c292c);
  assertEquals(fnv1a("foobar"), 0xbf9cf968);
});

const part = (aggregateId: string, n = N) => fnv1a(aggregateId) % n;
const key = (i: number) => `{orders:${i}}`;

const owners = (redis: StreamClient) =>
  leaseOwners(redis, Array.from({ length: N }, (_, i) => key(i)), GROUP);

/**
 * Where the instances forward to: `own`, each partition to `{orders:i}:out` in its own slot
 * (`p<i>.*=>{orders:i}:out`); `one`, every partition to the single stream `{out}` in another slot
 * for most of them (`*=>{out}`, through the outboxes and the relay).
 */
type Output = "own" | "one";

function outputs(output: Output): string[] {
  return output === "one" ? ["{out}"] : Array.from({ length: N }, (_, i) => `${key(i)}:out`);
}

function serviceEnv(
  cluster: RedisClusterFixture,
  name: string,
  output: Output = "own",
): Record<string, string> {
  const routes = output === "one"
    ? "*=>{out}"
    : Array.from({ length: N }, (_, i) => `p${i}.*=>${key(i)}:out`).join(",");
  return {
    ...cluster.env(),
    SERVICE_NAME: "cluster-parts-e2e",
    CONSUMER_NAME: name,
    CONSUMER_GROUP: GROUP,
    LOG_LEVEL: "INFO",
    STREAM: "orders",
    STREAM_START_ID: "0",
    STREAM_PARTITIONS: String(N),
    PARTITION_LEASE_MS: String(LEASE_MS),
    CLAIM_IDLE_MS: "1000",
    CONNECTION_TIMEOUT: "3000",
    ROUTES: routes,
  };
}

/**
 * Three instances share the partitions while a producer writes; one is SIGKILLed, one joins; then
 * every entry is forwarded once (to `output`) and each aggregate's entries are in order there.
 */
async function rebalanceScenario(output: Output): Promise<void> {
  await using cleanup = new Cleanup();
  const cluster = cleanup.use(await startRedisCluster());
  const redis = routedSender(await cluster.client());
  const masters = new Set(
    await Promise.all(Array.from({ length: N }, (_, i) => cluster.masterOf(key(i)))),
  );
  assertEquals(masters.size, 3, "the 8 partitions should land on all three masters");
  const start = async (name: string): Promise<ServiceProcess> =>
    cleanup.use(
      await startService({ env: serviceEnv(cluster, name, output), readyTimeoutMs: 30_000 }),
    );

  // A producer writing to the partitions all along, each aggregate numbered 1, 2, 3, ...
  const producer = startProducer(async (agg, n) => {
    const p = part(agg);
    await xadd(redis, key(p), wireEntry(`p${p}.updated`, agg, { n }));
  });
  cleanup.add(() => producer.stop().catch(() => {}));
  const forwarded = async () => {
    let total = 0;
    for (const out of outputs(output)) total += await xlen(redis, out);
    return total;
  };

  const p1 = await start("p1");
  const p2 = await start("p2");
  const p3 = await start("p3");
  await waitFor(async () => evenOver(await owners(redis), ["p1", "p2", "p3"]), {
    timeoutMs: REBALANCE_MS,
    message: "8 partitions spread over p1, p2, p3",
  });
  // The membership record shares the slot of the stream's own tag.
  const members = await redis.sendCommand(["ZRANGE", `{orders}:members:${GROUP}`, "0", "-1"]);
  assertEquals([...members as string[]].sort(), ["p1", "p2", "p3"]);

  // p2 dies without a word: its leases lapse and p1 and p3 take its partitions over; then p4
  // joins and gets its share. Everything is forwarded once, each aggregate in order.
  const { joined: p4 } = await killAndJoin({
    owners: () => owners(redis),
    forwarded,
    producer,
    victim: p2,
    survivors: { p1, p3 },
    join: start,
    rebalanceMs: REBALANCE_MS,
    report: async () => {
      for (let i = 0; i < N; i++) {
        const pending = await redis.sendCommand(["XPENDING", key(i), GROUP]);
        const lease = await redis.sendCommand(["GET", `${key(i)}:lease:${GROUP}`]);
        console.log(key(i), "lease", lease, "pending", JSON.stringify(pending));
      }
    },
  });
  const out: StreamEntry[] = [];
  for (const [i, target] of outputs(output).entries()) {
    for (const e of await readStream(redis, target)) {
      if (output === "own") {
        assertEquals(slotOf(target), slotOf(key(i)));
        assertEquals(
          part(e.fields.aggregateId),
          i,
          `${e.fields.aggregateId} forwarded from its own partition`,
        );
      }
      out.push(e);
    }
  }
  assertInOrder(out, producer.seq);

  for (const svc of [p1, p3, p4]) assertEquals((await svc.stop()).code, 0);
  assertEquals(await owners(redis), new Array(N).fill(undefined), "leases released at stop");
}

Deno.test({
  name:
    "cluster: three processes share 8 partitions; a SIGKILL and a join rebalance; order per aggregate kept",
  sanitizeOps: false, // node-redis cluster clients keep timers for their topology refresh.
  sanitizeResources: false,
  fn: () => rebalanceScenario("own"),
});

Deno.test({
  name:
    "cluster: partitions rebalanced through a SIGKILL and a join, forwarded to one target in another slot: once each, in order",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => rebalanceScenario("one"),
});

clusterTest(
  "cluster: the trigger publishes to {S:<FNV-1a(aggregateId) mod N>}; admin partitions; dead letters replayed per partition",
  {},
  async ({ cleanup, cluster, redis }) => {
    const env: Record<string, string> = { ...serviceEnv(cluster, "t1"), STREAM_PARTITIONS: "5" };
    delete env.ROUTES;
    const svc = cleanup.use(await startService({ env, readyTimeoutMs: 30_000 }));
    const ids = ["order-1", "order-2", "customer-77", "façade-ü", "日本-3", "x"];
    const hit = new Set<number>();
    for (const aggregateId of ids) {
      const res = await svc.request("/trigger-test-event", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ event: "order.created", aggregateId }),
      });
      assertEquals(res.status, 200, res.text);
      const { stream, id } = res.json as { stream: string; id: string };
      const p = part(aggregateId, 5);
      hit.add(p);
      assertEquals(stream, `{orders:${p}}`, `partition of ${aggregateId}`);
      const entries = await redis.sendCommand(["XRANGE", stream, id, id]) as unknown[];
      assertEquals(entries.length, 1, `${id} in ${stream}`);
    }
    assert(hit.size >= 3, `the aggregates should hit several partitions: ${[...hit]}`);

    // The admin route and the gauge: this one instance owns all 5 partitions.
    const report = await waitFor(async () => {
      const res = await svc.request("/admin/partitions");
      const body = res.json as {
        partitions: number;
        streams: { stream: string; partitions: { key: string; owner: string | null }[] }[];
      };
      const owners = body?.streams?.[0]?.partitions?.map((p) => p.owner);
      return res.status === 200 && owners?.length === 5 && owners.every((o) => o === "t1")
        ? body
        : undefined;
    }, { timeoutMs: 20_000, message: "GET /admin/partitions: t1 owns the 5 partitions" });
    assertEquals(report.partitions, 5);
    assertEquals(
      report.streams[0].partitions.map((p) => p.key),
      [0, 1, 2, 3, 4].map((i) => `{orders:${i}}`),
    );
    const metrics = (await svc.request("/metrics")).text;
    assert(
      /^stream_partitions_owned\{stream="orders"\} 5$/m.test(metrics),
      "stream_partitions_owned 5",
    );

    // Dead letters of two partitions (malformed: no event), replayed each into its own partition.
    for (const i of [1, 3]) {
      await xadd(redis, `{orders:${i}}`, { aggregateId: `m${i}`, payload: "{}" });
    }
    for (const i of [1, 3]) {
      await waitFor(async () => await xlen(redis, `{orders:${i}}:dlq`) === 1, {
        message: `the malformed entry in {orders:${i}}:dlq`,
      });
    }
    const replay = await svc.request("/admin/dlq/replay", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ stream: "orders" }),
    });
    assertEquals(replay.status, 200, replay.text);
    const { replayed, ids: moved } = replay.json as { replayed: number; ids: string[] };
    assertEquals(replayed, 2);
    for (const [k, i] of [1, 3].entries()) {
      const back = await redis.sendCommand(["XRANGE", `{orders:${i}}`, moved[k], moved[k]]);
      assertEquals((back as unknown[]).length, 1, `${moved[k]} replayed into {orders:${i}}`);
    }
    assertEquals((await svc.stop()).code, 0);
  },
);
