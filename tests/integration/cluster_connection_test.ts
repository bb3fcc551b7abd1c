/**
 * `ClusterConnection` (src/redis/cluster.ts) on a real local Redis Cluster (3 masters + 3
 * replicas): readiness PINGs every master, commands are routed by key, a script runs on keys of
 * one slot (and a cross-slot one is Redis' CROSSSLOT reply), a blocking read waits on its own
 * connection to the node that serves its slot without delaying other commands, and after a
 * master is killed its replica takes over and commands and blocking reads work again.
 *
 * @module
 */

import { loadConfig } from "../../src/config.ts";
import { ClusterConnection } from "../../src/redis/cluster.ts";
import { Script } from "../../src/redis/commander.ts";
import { RedisUnavailableError } from "../../src/redis/errors.ts";
import { KeySchema, partitionKey, slotOf } from "../../src/stream/keys.ts";
import { Leases, readLease } from "../../src/stream/partitions/leases.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { type RedisClusterFixture, startRedisCluster } from "../support/redis_cluster.ts";
import { freePort, waitFor } from "../support/wait.ts";

function redisConfig(seeds: string, extra: Record<string, string> = {}) {
  return loadConfig({
    REDIS_CLUSTER_NODES: seeds,
    SERVICE_NAME: "cluster-test",
    STREAM: "{orders}",
    CONNECTION_TIMEOUT: "5000",
    MAX_RETRY_ATTEMPTS: "2",
    RETRY_DELAYS: "200",
    ...extra,
  }).redis;
}

/** The CLIENT LIST lines of the node on `port`. */
async function clientList(cluster: RedisClusterFixture, port: number): Promise<string[]> {
  return String(await cluster.command(port, ["CLIENT", "LIST"])).trim().split("\n");
}

const TWO_KEYS = new Script(`
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
return redis.call('MGET', KEYS[1], KEYS[2])
`);

Deno.test({
  name: "ClusterConnection: readiness, routing, scripts, blocking reads, failover",
  sanitizeOps: false, // node-redis cluster clients keep timers for their topology refresh.
  sanitizeResources: false,
  fn: async (t) => {
    await using cleanup = new Cleanup();
    const cluster = cleanup.use(await startRedisCluster());
    const conn = new ClusterConnection({
      redis: redisConfig(cluster.seeds),
      clientName: "cluster-test",
    });
    cleanup.add(() => conn.close());
    await conn.connect();
    assertEquals(conn.state, "connected");

    await t.step("readiness PINGs every master", async () => {
      assert(await conn.ready(5_000), conn.lastError);
      assertEquals(conn.client.masters.length, 3);
      for (const port of await cluster.masters()) {
        const names = (await clientList(cluster, port)).join("\n");
        assertStringIncludes(names, "name=cluster-test:cmd", `master ${port}`);
      }
    });

    await t.step("commands are routed by key to every master", async () => {
      const keys = Array.from({ length: 30 }, (_, i) => `k${i}`);
      for (const key of keys) await conn.exec(key, (c) => c.set(key, `v-${key}`));
      for (const key of keys) assertEquals(await conn.send(key, ["GET", key]), `v-${key}`);
      const masters = new Set(await Promise.all(keys.map((k) => cluster.masterOf(k))));
      assertEquals(masters.size, 3);
    });

    await t.step(
      "a script runs on keys of one slot; a cross-slot one is a CROSSSLOT reply",
      async () => {
        const partition = partitionKey("orders", 5);
        const lease = new KeySchema({ group: "g" }).lease(partition);
        assertEquals(await TWO_KEYS.run(conn, [`${partition}:a`, `${partition}:b`], ["x"]), [
          "x",
          "x",
        ]);
        const leases = new Leases(conn, "pod-a", 10_000);
        assert(await leases.acquire(lease));
        assertEquals((await readLease(conn, lease)).owner, "pod-a");
        assert(slotOf("{a}") !== slotOf("{b}"));
        const err = await assertRejects(() => TWO_KEYS.run(conn, ["{a}", "{b}"], ["x"]));
        assertStringIncludes(String(err), "CROSSSLOT");
        assertEquals(conn.state, "connected");
        assertEquals(conn.breaker.state, "closed");
      },
    );

    await t.step("a blocking read waits on its own connection to the slot's master", async () => {
      const stream = "{orders}";
      await conn.send(stream, ["XGROUP", "CREATE", stream, "g", "$", "MKSTREAM"]);
      const master = await cluster.masterOf(stream);
      const reading = conn.readGroup([stream], [">"], ["GROUP", "g", "c1", "COUNT", "10"], 30_000);
      await waitFor(
        async () =>
          (await clientList(cluster, master)).some((line) =>
            line.includes(`name=cluster-test:blk:${slotOf(stream)}`) &&
            line.includes("cmd=xreadgroup")
          ),
        { timeoutMs: 15_000, message: "the blocked XREADGROUP on the slot's master" },
      );
      // Other commands, on that master too, are not held up by the blocked read.
      assertEquals(await conn.send(`${stream}:other`, ["SET", `${stream}:other`, "1"]), "OK");
      const id = String(await conn.send(stream, ["XADD", stream, "*", "f", "v"]));
      const reply = await reading as [string, [string, string[]][]][];
      assertEquals(reply[0][0], stream);
      assertEquals(reply[0][1][0][0], id);
      assertEquals(reply[0][1][0][1], ["f", "v"]);
      await assertRejects(
        () => conn.readGroup(["{a}", "{b}"], [">", ">"], ["GROUP", "g", "c1"], 10),
        TypeError,
      );
    });

    await t.step("a killed master: its replica takes over and everything works again", async () => {
      const stream = "{orders}";
      await conn.send(stream, ["SET", `${stream}:before`, "kept"]);
      assertEquals(Number(await conn.send(stream, ["WAIT", "1", "5000"])), 1);
      const slot = slotOf(stream);
      const oldMaster = await cluster.masterOfSlot(slot);
      await cluster.kill(oldMaster);
      const newMaster = await cluster.waitFailover(slot, oldMaster);
      const value = await waitFor(async () => {
        try {
          return await conn.send(stream, ["GET", `${stream}:before`]);
        } catch {
          return undefined;
        }
      }, { timeoutMs: 60_000, intervalMs: 200, message: "commands to work after the failover" });
      assertEquals(value, "kept");
      await waitFor(() => conn.ready(2_000), {
        timeoutMs: 60_000,
        intervalMs: 200,
        message: "every master to answer again",
      });
      assertEquals(conn.masterAddressOf(stream).port, newMaster);
      // The next blocking read goes to the new master.
      const read = await waitFor(async () => {
        try {
          return { reply: await conn.readGroup([stream], [">"], ["GROUP", "g", "c1"], 100) };
        } catch {
          return undefined;
        }
      }, { timeoutMs: 30_000, intervalMs: 200, message: "a blocking read on the new master" });
      assertEquals(read.reply, null);
      const lines = await clientList(cluster, newMaster);
      assert(lines.some((l) => l.includes(`name=cluster-test:blk:${slot}`)), lines.join("\n"));
    });
  },
});

Deno.test({
  name:
    "ClusterConnection.connect() gives up with RedisUnavailableError when no seed answers, naming why",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const conn = new ClusterConnection({
      redis: redisConfig(`127.0.0.1:${freePort()}`, { CONNECTION_TIMEOUT: "1000" }),
      clientName: "cluster-test",
    });
    try {
      const err = await assertRejects(() => conn.connect(), RedisUnavailableError);
      // The cause node-redis reports only as an "error" event is in the message.
      assertMatch(err.message, /All the root nodes are unavailable \(.*refused/i);
    } finally {
      await conn.close();
    }
  },
});

Deno.test({
  name: "ClusterConnection applies the ACL password to every node",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cleanup = new Cleanup();
    const cluster = cleanup.use(await startRedisCluster({ password: "s3cret-pw" }));
    const denied = new ClusterConnection({
      redis: redisConfig(cluster.seeds, { CONNECTION_TIMEOUT: "2000", MAX_RETRY_ATTEMPTS: "1" }),
      clientName: "no-auth",
    });
    cleanup.add(() => denied.close());
    const err = await assertRejects(() => denied.connect(), RedisUnavailableError);
    assert(!err.message.includes("s3cret-pw"));

    const conn = new ClusterConnection({
      redis: redisConfig(cluster.seeds, { REDIS_PW: "s3cret-pw" }),
      clientName: "with-auth",
    });
    cleanup.add(() => conn.close());
    await conn.connect();
    assert(await conn.ready(5_000), conn.lastError);
    const keys = Array.from({ length: 20 }, (_, i) => `acl-${i}`);
    for (const key of keys) await conn.send(key, ["SET", key, "1"]);
    assertEquals(new Set(await Promise.all(keys.map((k) => cluster.masterOf(k)))).size, 3);
    // The blocking connection authenticates too.
    await conn.send("{acl}", ["XGROUP", "CREATE", "{acl}", "g", "$", "MKSTREAM"]);
    assertEquals(await conn.readGroup(["{acl}"], [">"], ["GROUP", "g", "c"], 50), null);
  },
});
