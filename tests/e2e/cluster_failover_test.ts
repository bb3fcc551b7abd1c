/**
 * A Redis Cluster master killed while the spawned service consumes (README "Redis Cluster",
 * "Delivery guarantees"): a producer appends to `{fo}` in batches and counts an entry only once
 * `WAIT 1` confirmed a replica holds it; the master serving `{fo}`'s slot is killed with SIGKILL,
 * its replica takes over, the killed node comes back as a replica (so `WAIT` confirms again).
 * Every confirmed entry is then handled: forwarded to `{fo}:out` (same slot, `ROUTES`), and no
 * entry is forwarded twice, so the service neither lost its place nor repeated settled work.
 * The same with partitioned streams: two instances share the 4 partitions of `fp`, and the master
 * killed serves some of them and the membership record `{fp}:members:<group>`; afterwards the
 * leases are spread over both instances again and every confirmed entry is forwarded once.
 *
 * @module
 */

import { assert, assertEquals, assertNotEquals } from "../support/assert.ts";
import { clusterTest, slotOf } from "../support/redis_cluster.ts";
import { ConfirmedProducer } from "../support/cluster_producer.ts";
import { startService } from "../support/service.ts";
import { readStream, type StreamClient, wireEntry } from "../support/streams.ts";
import { waitFor } from "../support/wait.ts";

const STREAM = "{fo}";
const OUT = "{fo}:out";

clusterTest(
  "cluster: a master killed while consuming; every WAIT-confirmed entry handled, none forwarded twice",
  {},
  async ({ cleanup, cluster, redis }) => {
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

    const producer = cleanup.use(
      new ConfirmedProducer(cluster, {
        stream: STREAM,
        make: (i) => wireEntry("order.updated", `agg-${i % 10}`, { n: i }),
      }),
    );
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
);

const PARTS = 4;
const PGROUP = "fp-group";
const pkey = (i: number) => `{fp:${i}}`;

/** FNV-1a, 32 bits, of the UTF-8 bytes of `text` (README "Partitioned streams"). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return h;
}

async function leaseOwners(redis: StreamClient): Promise<(string | null)[]> {
  const out: (string | null)[] = [];
  for (let i = 0; i < PARTS; i++) {
    out.push(await redis.sendCommand(["GET", `${pkey(i)}:lease:${PGROUP}`]) as string | null);
  }
  return out;
}

clusterTest(
  "cluster: partitions survive the kill of the master serving some of them and the membership record",
  {},
  async ({ cleanup, cluster, redis }) => {
    // The master to kill serves the membership record and at least one partition.
    const victim = await cluster.masterOf("{fp}");
    const onVictim: number[] = [];
    for (let i = 0; i < PARTS; i++) {
      if (await cluster.masterOf(pkey(i)) === victim) onVictim.push(i);
    }
    assert(onVictim.length >= 1, `a partition of fp on the master of {fp} (slot ${slotOf("fp")})`);

    const routes = Array.from({ length: PARTS }, (_, i) => `p${i}.*=>${pkey(i)}:out`).join(",");
    const start = async (name: string) =>
      cleanup.use(
        await startService({
          env: {
            ...cluster.env(),
            SERVICE_NAME: "cluster-failover-parts-e2e",
            CONSUMER_NAME: name,
            CONSUMER_GROUP: PGROUP,
            LOG_LEVEL: "INFO",
            STREAM: "fp",
            STREAM_START_ID: "0",
            STREAM_PARTITIONS: String(PARTS),
            PARTITION_LEASE_MS: "2000",
            ROUTES: routes,
            CLAIM_IDLE_MS: "2000",
            CONNECTION_TIMEOUT: "2000",
            BLOCK_MS: "1000",
          },
          readyTimeoutMs: 30_000,
        }),
      );
    const q1 = await start("q1");
    const q2 = await start("q2");
    const spread = async () => {
      const owners = await leaseOwners(redis);
      const n1 = owners.filter((o) => o === "q1").length;
      const n2 = owners.filter((o) => o === "q2").length;
      return n1 + n2 === PARTS && Math.abs(n1 - n2) <= 1;
    };
    await waitFor(spread, { timeoutMs: 20_000, message: "4 partitions spread over q1, q2" });

    // One WAIT-confirmed producer per partition; each aggregate hashes to that partition.
    const aggs = Array.from({ length: 200 }, (_, i) => `agg-${i}`);
    const producers = Array.from({ length: PARTS }, (_, p) => {
      const mine = aggs.filter((a) => fnv1a(a) % PARTS === p);
      return cleanup.use(
        new ConfirmedProducer(cluster, {
          stream: pkey(p),
          batchSize: 5,
          make: (i) => wireEntry(`p${p}.updated`, mine[i % mine.length], { n: i }),
        }),
      );
    });
    const forwarded = async (p: number) =>
      (await readStream(redis, `${pkey(p)}:out`)).map((e) => JSON.parse(e.fields.payload).n);
    await waitFor(async () => {
      for (let p = 0; p < PARTS; p++) {
        if (producers[p].confirmed.length < 50 || (await forwarded(p)).length < 20) return false;
      }
      return true;
    }, { timeoutMs: 30_000, message: "50 confirmed and 20 forwarded entries per partition" });

    const { killed } = await cluster.killMasterOf("{fp}");
    await cluster.restart(killed);
    const before = producers.map((pr) => pr.confirmed.length);
    await waitFor(() => producers.every((pr, p) => pr.confirmed.length >= before[p] + 50), {
      timeoutMs: 45_000,
      message: "50 more confirmed entries per partition after the failover",
    });
    for (const pr of producers) await pr.stop();
    await waitFor(spread, {
      timeoutMs: 20_000,
      message: "the partitions spread over q1, q2 again",
    });

    for (let p = 0; p < PARTS; p++) {
      let out: number[] = [];
      const confirmed = producers[p].confirmed;
      try {
        await waitFor(async () => {
          out = await forwarded(p);
          const seen = new Set(out);
          return confirmed.every((n) => seen.has(n));
        }, {
          timeoutMs: 60_000,
          message: `all ${confirmed.length} confirmed entries of ${pkey(p)}`,
        });
      } catch (err) {
        for (const svc of [q1, q2]) {
          console.log(svc.output().split("\n").filter((l) => /WARN|ERROR/.test(l)).join("\n"));
        }
        throw err;
      }
      const dupes = out.filter((n, i) => out.indexOf(n) !== i);
      assertEquals(dupes, [], `no entry of ${pkey(p)} forwarded twice`);
    }
    for (const svc of [q1, q2]) assertEquals((await svc.stop()).code, 0);
  },
);
