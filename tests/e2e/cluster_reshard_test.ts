/**
 * A hash slot moved to another master while the spawned service consumes it (README "Redis
 * Cluster"): a producer keeps appending to `{rs}` through a cluster client, and the slot of `{rs}`
 * is migrated key by key (`SETSLOT IMPORTING/MIGRATING`, `MIGRATE`, `SETSLOT NODE`), so for a
 * while the stream, its forward target `{rs}:out`, its checkpoint and its dead-letter stream sit
 * on two nodes (`ASK`, `TRYAGAIN`) and then its blocking read is redirected (`MOVED`). Afterwards
 * every entry is forwarded exactly once, and new entries still are.
 *
 * @module
 */

import { assertEquals, assertNotEquals } from "../support/assert.ts";
import { clusterTest, slotOf } from "../support/redis_cluster.ts";
import { startService } from "../support/service.ts";
import { readStream, wireEntry, xadd, xlen } from "../support/streams.ts";
import { waitFor } from "../support/wait.ts";

const STREAM = "{rs}";
const OUT = "{rs}:out";

clusterTest(
  "cluster: the stream's slot moved to another master while consuming; every entry forwarded once",
  {},
  async ({ cleanup, cluster, redis }) => {
    const svc = cleanup.use(
      await startService({
        env: {
          ...cluster.env(),
          SERVICE_NAME: "cluster-reshard-e2e",
          CONSUMER_NAME: "r1",
          LOG_LEVEL: "INFO",
          STREAM,
          STREAM_START_ID: "0",
          ROUTES: `*=>${OUT}`,
          DIAGNOSTIC_EVENTS: "true",
          CLAIM_IDLE_MS: "2000",
          CONNECTION_TIMEOUT: "2000",
          BLOCK_MS: "1000",
        },
        readyTimeoutMs: 30_000,
      }),
    );

    // The producer: entry n carries payload {n}; `written` counts the XADDs that succeeded.
    let written = 0;
    let producing = true;
    const producer = (async () => {
      while (producing) {
        await xadd(
          redis,
          STREAM,
          wireEntry("order.updated", `agg-${written % 10}`, { n: written }),
        );
        written++;
        if (written % 10 === 0) await new Promise((r) => setTimeout(r, 10)); // pacing
      }
    })();
    cleanup.add(async () => {
      producing = false;
      await producer.catch(() => {});
    });
    await waitFor(async () => await xlen(redis, OUT) >= 100, {
      timeoutMs: 30_000,
      message: "100 entries forwarded before the move",
    });
    // A dead letter, so that {rs}:dlq is one more key of the slot to move.
    await xadd(redis, STREAM, { payload: "{}" });

    // One key per MIGRATE, and traffic between rounds: the keys of the slot are split for a while.
    const slot = slotOf(STREAM);
    const { from, to } = await cluster.migrateSlot(slot, {
      keysPerRound: 1,
      onRound: async () => {
        const at = written;
        await waitFor(() => written >= at + 20, { message: "20 entries written between rounds" });
      },
    });
    assertNotEquals(from, to);
    assertEquals(await cluster.masterOf(STREAM), to);
    assertEquals(await cluster.command(from, ["CLUSTER", "COUNTKEYSINSLOT", String(slot)]), 0);

    const afterMove = written;
    await waitFor(() => written >= afterMove + 100, {
      message: "100 entries written after the move",
    });
    producing = false;
    await producer;

    let out: number[] = [];
    try {
      await waitFor(async () => {
        out = (await readStream(redis, OUT)).map((e) => JSON.parse(e.fields.payload).n as number);
        return out.length >= written;
      }, { timeoutMs: 60_000, message: `${written} entries forwarded` });
    } catch (err) {
      console.log(svc.output().split("\n").filter((l) => /WARN|ERROR/.test(l)).join("\n"));
      throw err;
    }
    assertEquals(out.length, written, "each entry forwarded exactly once");
    assertEquals([...out].sort((a, b) => a - b), Array.from({ length: written }, (_, i) => i));
    assertEquals((await readStream(redis, `${STREAM}:dlq`)).length, 1);
    assertEquals((await svc.request("/health/ready")).status, 200);
    assertEquals((await svc.stop()).code, 0);
  },
);
