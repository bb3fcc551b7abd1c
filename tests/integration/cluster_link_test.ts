/**
 * `ClusterLink` (src/redis/cluster_link.ts), the service's Redis access in cluster mode, on a
 * real local Redis Cluster (3 masters + 3 replicas): raw commands sent through `exec` reach the
 * master of their key, a script is loaded on every master (so it runs wherever its keys live), a
 * blocking read of streams in several slots reads each slot on its own connection and merges
 * the replies (entries in one slot wake the whole read; nothing a read took is dropped), and
 * `unblockReader` wakes a blocked read.
 *
 * @module
 */

import { loadConfig } from "../../src/config.ts";
import { ClusterLink } from "../../src/redis/cluster_link.ts";
import { LuaScript } from "../../src/stream/scripts.ts";
import { slotOf } from "../../src/stream/keys.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedisCluster } from "../support/redis_cluster.ts";
import { waitFor } from "../support/wait.ts";

const ECHO_KEY = new LuaScript(`
redis.call('SET', KEYS[1], ARGV[1])
return redis.call('GET', KEYS[1])
`);

type Reply = [string, [string, string[]][]][] | null;

/** A BLOCK far beyond any test deadline: a read that returns did not wait for it. */
const LONG_BLOCK_MS = 120_000;

Deno.test({
  name: "ClusterLink: routed commands, scripts on every master, merged blocking reads per slot",
  sanitizeOps: false, // node-redis cluster clients keep timers for their topology refresh.
  sanitizeResources: false,
  fn: async (t) => {
    await using cleanup = new Cleanup();
    const cluster = cleanup.use(await startRedisCluster());
    const link = new ClusterLink({
      redis: loadConfig({
        REDIS_CLUSTER_NODES: cluster.seeds,
        SERVICE_NAME: "link-test",
        STREAM: "{a},{b},{c}",
        CONNECTION_TIMEOUT: "5000",
      }).redis,
      clientName: "link-test",
    });
    cleanup.add(() => link.close());
    await link.connect();
    assert(link.connected);
    const streams = ["{a}", "{b}", "{c}"];
    const masters = new Set(await Promise.all(streams.map((s) => cluster.masterOf(s))));
    assertEquals(masters.size, 3, "the three streams live on three masters");

    await t.step("exec: each raw command goes to the master of its key", async () => {
      for (const s of streams) {
        await link.exec((c) => c.sendCommand(["XGROUP", "CREATE", s, "g", "$", "MKSTREAM"]));
        await link.exec((c) => c.sendCommand(["SET", `${s}:k`, s]));
      }
      for (const s of streams) {
        assertEquals(await cluster.command(await cluster.masterOf(s), ["GET", `${s}:k`]), s);
      }
      assert(await link.ping(5_000) >= 0);
    });

    await t.step("a script runs on keys of any master (loaded on every one)", async () => {
      for (const s of streams) {
        assertEquals(await link.exec((c) => ECHO_KEY.run(c, [`${s}:echo`], [s])), s);
      }
    });

    await t.step("a read of three slots returns the entries of the one that got some", async () => {
      const reading = link.readGroup(
        streams,
        streams.map(() => ">"),
        ["GROUP", "g", "c1", "COUNT", "30"],
        LONG_BLOCK_MS,
      ) as Promise<Reply>;
      // Every slot's read blocks on its own connection to its master.
      for (const s of streams) {
        const master = await cluster.masterOf(s);
        await waitFor(async () => {
          const lines = String(await cluster.command(master, ["CLIENT", "LIST"])).split("\n");
          return lines.some((l) =>
            l.includes(`name=link-test:blk:${slotOf(s)}`) && l.includes("cmd=xreadgroup")
          );
        }, { timeoutMs: 15_000, message: `the blocked read of ${s}` });
      }
      const id = String(await link.exec((c) => c.sendCommand(["XADD", "{b}", "*", "f", "v"])));
      const reply = await waitFor(() => Promise.race([reading, Promise.resolve(undefined)]), {
        timeoutMs: 30_000,
        message: "the merged read to return before BLOCK_MS",
      });
      assertEquals(reply, [["{b}", [[id, ["f", "v"]]]]]);
    });

    await t.step("entries of several slots are merged; nothing a read took is lost", async () => {
      const ids: string[] = [];
      for (const s of streams) {
        for (let i = 0; i < 4; i++) {
          ids.push(String(await link.exec((c) => c.sendCommand(["XADD", s, "*", "i", `${i}`]))));
        }
      }
      const seen: string[] = [];
      while (seen.length < ids.length) {
        const reply = await link.readGroup(
          streams,
          streams.map(() => ">"),
          ["GROUP", "g", "c1", "COUNT", "6"],
          LONG_BLOCK_MS,
        ) as Reply;
        assert(reply, "a read with entries waiting returns them");
        // COUNT 6 over three slots: at most 2 per slot, so 6 in all.
        const got = reply.flatMap(([, entries]) => entries.map(([id]) => id));
        assert(got.length <= 6, `${got.length} entries for COUNT 6`);
        seen.push(...got);
      }
      assertEquals(seen.toSorted(), ids.toSorted());
    });

    await t.step("unblockReader wakes a blocked read with no entries", async () => {
      const reading = link.readGroup(
        streams,
        streams.map(() => ">"),
        ["GROUP", "g", "c1", "COUNT", "10"],
        LONG_BLOCK_MS,
      );
      let woke: Reply | "blocked" = "blocked";
      void reading.then((r) => woke = r as Reply);
      // Polled: an UNBLOCK sent before the read blocks finds nothing to wake.
      await waitFor(async () => {
        await link.unblockReader();
        return woke !== "blocked";
      }, { timeoutMs: 30_000, intervalMs: 100, message: "the read to wake" });
      assertEquals(woke, null);
    });
  },
});
