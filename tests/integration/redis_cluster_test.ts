/**
 * Self-test of the Redis Cluster fixture of `tests/support/redis_cluster.ts`: 3 masters and 3
 * replicas start and join, a cluster client routes keys, `slotOf` agrees with `CLUSTER KEYSLOT`,
 * a killed master is replaced by its replica and rejoins after a restart, `stop()` ends every
 * process; `migrateSlot` moves a slot under traffic and `ConfirmedProducer` keeps every entry
 * `WAIT` confirmed through a failover.
 *
 * @module
 */

import { assert, assertEquals, assertNotEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { probeRedis } from "../support/redis_server.ts";
import { routedSender, slotOf, startRedisCluster } from "../support/redis_cluster.ts";
import { ConfirmedProducer } from "../support/cluster_producer.ts";
import { readStream, wireEntry, xadd, xlen } from "../support/streams.ts";
import { waitFor } from "../support/wait.ts";

function processAlive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT"); // Harmless probe: fails with ESRCH when the process is gone.
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "startRedisCluster(): 3 masters + 3 replicas, routed keys, failover, restart, stop",
  sanitizeOps: false, // node-redis cluster clients keep timers for their topology refresh.
  sanitizeResources: false,
  fn: async () => {
    const cluster = await startRedisCluster();
    const pids = cluster.nodes.map((n) => n.pid);
    try {
      assertEquals(cluster.nodes.length, 6);
      assert(!cluster.ports.includes(6379));
      assertEquals(cluster.env().REDIS_CLUSTER_NODES.split(",").length, 6);
      const masters = await cluster.masters();
      assertEquals(masters.length, 3);
      for (const port of cluster.ports) {
        assertEquals((await cluster.clusterInfo(port)).cluster_state, "ok");
      }

      // Keys spread over every master, and the client routes each to its node.
      const client = await cluster.client();
      const keys = Array.from({ length: 30 }, (_, i) => `key-${i}`);
      for (const key of keys) await client.set(key, key.toUpperCase());
      for (const key of keys) assertEquals(await client.get(key), key.toUpperCase());
      const owners = new Set(await Promise.all(keys.map((k) => cluster.masterOf(k))));
      assertEquals(owners.size, 3, "30 keys should land on all three masters");
      for (const key of ["key-1", "{user:7}.a", "{}x", "a{b}c{d}"]) {
        assertEquals(
          slotOf(key),
          Number(await cluster.command(masters[0], ["CLUSTER", "KEYSLOT", key])),
        );
      }

      // Kill the master of key-1: its replica takes over and the client follows. First WAIT for
      // the replica to hold key-1 (on the connection of the SET): on a busy machine it can lag,
      // and a failover would then lose the key.
      assertEquals(Number(await client.sendCommand("key-1", false, ["WAIT", "1", "10000"])), 1);
      const slot = slotOf("key-1");
      const oldMaster = await cluster.masterOfSlot(slot);
      await cluster.kill(oldMaster);
      const newMaster = await cluster.waitFailover(slot, oldMaster);
      assertNotEquals(newMaster, oldMaster);
      let last: unknown = "no reply yet";
      await waitFor(async () => (last = await client.get("key-1")) === "KEY-1", {
        timeoutMs: 30_000,
        message: "the cluster client to read key-1 from the new master",
      }).catch((err) => {
        throw new Error(`${err.message}; last reply: ${JSON.stringify(last)}`, { cause: err });
      });
      await client.set("key-1", "after-failover");

      // The killed node comes back and rejoins as a replica.
      await cluster.restart(oldMaster);
      await cluster.waitHealthy();
      assertEquals(await cluster.masterOfSlot(slot), newMaster);
      assertEquals(await client.get("key-1"), "after-failover");
    } finally {
      await cluster.stop();
    }
    for (const node of cluster.nodes) {
      assert(!node.running);
      assert(!(await probeRedis(node.port, { timeoutMs: 200 })));
    }
    for (const pid of pids) assert(!processAlive(pid), `redis-server ${pid} still alive`);
  },
});

Deno.test({
  name: "startRedisCluster() works with Cleanup and a second stop() is a no-op",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cleanup = new Cleanup();
    const cluster = cleanup.use(await startRedisCluster());
    const pids = cluster.nodes.map((n) => n.pid);
    const client = await cluster.client();
    await client.set("{t}a", "1");
    assertEquals(await client.get("{t}a"), "1");
    assertEquals(await cleanup.run(), []);
    await cluster.stop();
    for (const pid of pids) assert(!processAlive(pid), `redis-server ${pid} still alive`);
  },
});

Deno.test({
  name:
    "migrateSlot() moves a slot under traffic; ConfirmedProducer keeps every WAIT-confirmed entry through killMasterOf()",
  sanitizeOps: false, // node-redis cluster clients keep timers for their topology refresh.
  sanitizeResources: false,
  fn: async () => {
    await using cleanup = new Cleanup();
    const cluster = cleanup.use(await startRedisCluster());
    const client = await cluster.client();
    const redis = routedSender(client);

    // A slot moved while a cluster client keeps writing to its stream: nothing lost.
    const stream = "{mig}";
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        await xadd(redis, stream, wireEntry("t", "a", { n: written }));
        written++;
      }
    })();
    await waitFor(() => written >= 50, { message: "50 entries before the move" });
    for (let i = 0; i < 20; i++) await client.set(`{mig}:k${i}`, String(i));
    const slot = slotOf(stream);
    const { from, to } = await cluster.migrateSlot(slot);
    assertNotEquals(from, to);
    assertEquals(await cluster.masterOfSlot(slot), to);
    const seen = written;
    await waitFor(() => written >= seen + 50, { message: "50 entries after the move" });
    writing = false;
    await writer;
    assertEquals(await xlen(redis, stream), written);
    const n = (await readStream(redis, stream)).map((e) => JSON.parse(e.fields.payload).n);
    assertEquals(n, Array.from({ length: written }, (_, i) => i));
    assertEquals(await client.get("{mig}:k19"), "19");
    assertEquals(await cluster.command(from, ["CLUSTER", "COUNTKEYSINSLOT", String(slot)]), 0);

    // A producer confirmed by WAIT; the master dies; every confirmed entry is on the new one.
    const producer = cleanup.use(
      new ConfirmedProducer(cluster, {
        stream: "{wait}",
        make: (i) => wireEntry("t", "a", { n: i }),
      }),
    );
    await waitFor(() => producer.confirmed.length >= 100, { message: "100 confirmed entries" });
    const { killed, master } = await cluster.killMasterOf("{wait}");
    assertNotEquals(killed, master);
    await cluster.restart(killed); // It rejoins as a replica, so WAIT confirms again.
    const before = producer.confirmed.length;
    await waitFor(() => producer.confirmed.length >= before + 50, {
      timeoutMs: 30_000,
      message: "50 more confirmed entries after the failover",
    });
    await producer.stop();
    assert(producer.errors.length > 0, "the kill must have failed a batch");
    const stored = new Set(
      (await readStream(redis, "{wait}")).map((e) => JSON.parse(e.fields.payload).n as number),
    );
    for (const i of producer.confirmed) assert(stored.has(i), `confirmed entry ${i} lost`);
  },
});
