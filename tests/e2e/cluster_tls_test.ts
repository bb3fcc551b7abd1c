/**
 * The spawned service on a local Redis Cluster over TLS (README "Redis Cluster" and "Security":
 * TLS applies to every node): 3 masters + 3 replicas serving TLS with certificates made at test
 * time (`tests/support/tls.ts`) and asking clients for a certificate (mutual TLS), TLS on the
 * cluster bus and for replication, so that `CLUSTER SLOTS` tells a TLS client the nodes' TLS
 * ports. The service, seeded with the TLS ports only (`REDIS_TLS_ENABLED`, `REDIS_TLS_CA`, its
 * client certificate in `REDIS_TLS_CERT`/`REDIS_TLS_KEY`), becomes ready (every master answers),
 * talks to every master through its TLS port (CLIENT LIST of each master), consumes two tagged
 * streams on different masters (forwarded by `ROUTES` to a target in their own slot, which also
 * covers the blocking reads, on connections of their own) and publishes through
 * `POST /trigger-test-event`. With a CA that did not sign the nodes it never becomes ready and
 * exits 1 after its attempts.
 * One cluster for the file: the steps share it.
 *
 * @module
 */

import { assert, assertEquals, assertMatch, assertNotEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { routedSender, slotOf, startRedisCluster } from "../support/redis_cluster.ts";
import { runService, startService } from "../support/service.ts";
import { forwardedSourceIds, readStream, wireEntry, xadd, xlen } from "../support/streams.ts";
import { makePki } from "../support/tls.ts";
import { waitFor } from "../support/wait.ts";

const SERVICE = "cluster-tls-e2e";
const CONSUMER = "c1";

Deno.test({
  name:
    "cluster over TLS: ready on every master, consumes two slots, publishes; a foreign CA exits 1",
  sanitizeOps: false, // node-redis cluster clients keep timers for their topology refresh.
  sanitizeResources: false,
  fn: async (t) => {
    await using cleanup = new Cleanup();
    const pki = await makePki();
    cleanup.add(() => Deno.remove(pki.dir, { recursive: true }));
    const cluster = cleanup.use(await startRedisCluster({ tls: { pki, authClients: "yes" } }));
    // The fixture's own client speaks plaintext on the admin ports.
    const redis = routedSender(await cluster.client());
    const tlsEnv = {
      ...cluster.env(), // the TLS ports
      REDIS_TLS_ENABLED: "true",
      SERVICE_NAME: SERVICE,
      CONSUMER_NAME: CONSUMER,
      STREAM: "{ta},{tb}",
      CONNECTION_TIMEOUT: "3000",
    };
    assert(
      cluster.ports.every((p) => !tlsEnv.REDIS_CLUSTER_NODES.includes(`:${p}`)),
      "the seeds name no plaintext port",
    );

    await t.step("ready over TLS, consumes both slots, publishes", async () => {
      const [masterA, masterB] = [await cluster.masterOf("{ta}"), await cluster.masterOf("{tb}")];
      assertNotEquals(masterA, masterB, "the two streams should live on different masters");
      const svc = cleanup.use(
        await startService({
          env: {
            ...tlsEnv,
            REDIS_TLS_CA: pki.caCert,
            REDIS_TLS_CERT: pki.clientCert,
            REDIS_TLS_KEY: pki.clientKey,
            LOG_LEVEL: "INFO",
            STREAM_START_ID: "0",
            ROUTES: "a.*=>{ta}:out,b.*=>{tb}:out",
            BLOCK_MS: "1000",
          },
          readyTimeoutMs: 30_000,
        }),
      );

      const idsA: string[] = [];
      const idsB: string[] = [];
      for (let i = 0; i < 20; i++) {
        idsA.push(await xadd(redis, "{ta}", wireEntry("a.created", `agg-${i % 3}`, { n: i })));
        idsB.push(await xadd(redis, "{tb}", wireEntry("b.created", `agg-${i % 3}`, { n: i })));
      }
      // Published through the trigger into each stream, then consumed like the others.
      const triggers = [["{ta}", "a.trigger", idsA], ["{tb}", "b.trigger", idsB]] as const;
      for (const [stream, event, ids] of triggers) {
        const res = await svc.request("/trigger-test-event", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ stream, event }),
        });
        assertEquals(res.status, 200, res.text);
        const published = res.json as { id: string; stream: string };
        assertEquals(published.stream, stream);
        const entry = (await readStream(redis, stream)).find((e) => e.id === published.id);
        assertEquals(entry?.fields.event, event);
        ids.push(published.id);
      }

      for (const [stream, ids] of [["{ta}", idsA], ["{tb}", idsB]] as const) {
        const target = `${stream}:out`;
        assertEquals(slotOf(target), slotOf(stream));
        await waitFor(async () => await xlen(redis, target) >= ids.length, {
          timeoutMs: 30_000,
          message: `${ids.length} entries forwarded to ${target}`,
        });
        assertEquals(
          await forwardedSourceIds(redis, target),
          ids,
          `${target} holds each entry of ${stream} once, in order`,
        );
      }
      // Every master is reached, and through its TLS port: the local address of each of the
      // service's connections there (CLIENT LIST `laddr`) is the node's TLS port; among them the
      // blocking connection that read each stream's slot.
      for (const master of await cluster.masters()) {
        const tlsPort = cluster.tlsPortOf(master);
        const list = String(await cluster.command(master, ["CLIENT", "LIST"])).split("\n");
        const mine = list.filter((l) => l.includes(` name=${SERVICE}:${CONSUMER}`));
        assert(mine.length > 0, `no connection of the service on master ${master}:\n${list}`);
        for (const [stream, m] of [["{ta}", masterA], ["{tb}", masterB]] as const) {
          const blocking = ` name=${SERVICE}:${CONSUMER}:blk:${slotOf(stream)} `;
          if (m !== master) continue;
          assert(mine.some((l) => l.includes(blocking)), `no blocking read of ${stream} on ${m}`);
        }
        for (const line of mine) {
          assertMatch(line, new RegExp(` laddr=127\\.0\\.0\\.1:${tlsPort} `), `on ${master}`);
        }
      }

      assertEquals((await svc.request("/health/ready")).status, 200);
      assertEquals((await svc.stop()).code, 0, svc.output().slice(-2000));
      assert(!svc.output().includes("PRIVATE KEY"), "key material in the output");
    });

    await t.step("a CA that did not sign the nodes: never ready, exits 1", async () => {
      const run = await runService({
        ...tlsEnv,
        SERVICE_NAME: `${SERVICE}-badca`,
        REDIS_TLS_CA: pki.otherCaCert,
        REDIS_TLS_CERT: pki.clientCert,
        REDIS_TLS_KEY: pki.clientKey,
        MAX_RETRY_ATTEMPTS: "2",
        RETRY_DELAYS: "100",
      }, 30_000);
      const output = `${run.stdout}\n${run.stderr}`;
      assertEquals(run.code, 1, `exit code\n${output}`);
      assert(!/\bReady\b/.test(run.stdout), `became ready with a foreign CA:\n${output}`);
      // The operator must see why: the verification error, in the attempt that failed.
      const failed = run.stdout.split("\n").find((l) => l.includes("Cluster connection attempt 1"));
      assert(failed, `no failed attempt logged:\n${output}`);
      assertMatch(failed, /certificate/i);
      assertMatch(run.stdout, /Giving up on Redis/);
      assert(!output.includes("PRIVATE KEY"), "key material in the output");
    });
  },
});
