/**
 * Sentinel failover end to end: a master, a replica and three Sentinels (real `redis-server`
 * processes on loopback), the service finding the master through `REDIS_SENTINELS`; the master
 * is SIGKILLed and the service must be ready and consuming from the promoted replica within 30 s.
 *
 * @module
 */

import { createClient } from "@redis/client";
import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { probeRedis, type RedisClient, startRedis } from "../support/redis_server.ts";
import { startService } from "../support/service.ts";
import { freePort, waitFor } from "../support/wait.ts";
import { isDrained, pairs, preload, wireEntry } from "../support/streams.ts";

const MASTER_NAME = "mymaster";
const STREAM = "event-stream";
const GROUP = "sentinel-e2e";

/** A `redis-server --sentinel` process with its own config file in `dir`. */
class Sentinel implements AsyncDisposable {
  readonly port: number;
  readonly #child: Deno.ChildProcess;

  private constructor(port: number, child: Deno.ChildProcess) {
    this.port = port;
    this.#child = child;
  }

  /** Writes the config (monitoring the master at `masterPort`, quorum 2), starts, waits for PING. */
  static async start(dir: string, masterPort: number): Promise<Sentinel> {
    const port = freePort();
    const conf = `${dir}/sentinel-${port}.conf`;
    await Deno.writeTextFile(
      conf,
      [
        `port ${port}`,
        "bind 127.0.0.1",
        `dir ${dir}`,
        "sentinel resolve-hostnames no",
        `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterPort} 2`,
        `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
        `sentinel failover-timeout ${MASTER_NAME} 5000`,
        "",
      ].join("\n"),
    );
    const child = new Deno.Command("redis-server", {
      args: [conf, "--sentinel"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const sentinel = new Sentinel(port, child);
    try {
      await waitFor(() => probeRedis(port), { message: `sentinel on port ${port} to answer PING` });
    } catch (err) {
      await sentinel.stop();
      throw err;
    }
    return sentinel;
  }

  /** `SENTINEL MASTER mymaster` as a map. */
  async master(): Promise<Record<string, string>> {
    return await this.#ask(async (c) => {
      return pairs(await c.sendCommand(["SENTINEL", "MASTER", MASTER_NAME]) as string[]);
    });
  }

  /** The master's port according to this sentinel. */
  async masterPort(): Promise<number> {
    return await this.#ask(async (c) => {
      const reply = await c.sendCommand(
        ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
      ) as string[];
      return Number(reply[1]);
    });
  }

  async #ask<T>(fn: (c: RedisClient) => Promise<T>): Promise<T> {
    const client: RedisClient = createClient({
      RESP: 2,
      socket: {
        host: "127.0.0.1",
        port: this.port,
        reconnectStrategy: false,
        connectTimeout: 1000,
      },
    });
    client.on("error", () => {});
    try {
      await client.connect();
      return await fn(client);
    } finally {
      client.destroy();
    }
  }

  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.#child.status;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

Deno.test("service follows a Sentinel failover: ready and consuming within 30 s of the master's SIGKILL", async () => {
  await using cleanup = new Cleanup();
  const dir = await Deno.makeTempDir({ prefix: "rss-sentinel-" });
  cleanup.add(() => Deno.remove(dir, { recursive: true }));
  const master = cleanup.use(await startRedis());
  const replica = cleanup.use(
    await startRedis({ args: ["--replicaof", "127.0.0.1", String(master.port)] }),
  );
  const replicaClient = await replica.client();
  await waitFor(async () => {
    const info = String(await replicaClient.sendCommand(["INFO", "replication"]));
    return info.includes("master_link_status:up");
  }, { message: "the replica to sync with the master" });
  const sentinels: Sentinel[] = [];
  for (let i = 0; i < 3; i++) sentinels.push(cleanup.use(await Sentinel.start(dir, master.port)));
  // Failover needs the sentinels to know each other (majority vote) and the replica.
  await waitFor(async () => {
    const views = await Promise.all(sentinels.map((s) => s.master()));
    return views.every((m) => m["num-other-sentinels"] === "2" && m["num-slaves"] === "1");
  }, { timeoutMs: 20_000, intervalMs: 100, message: "sentinels to discover each other" });

  const svc = cleanup.use(
    await startService({
      env: {
        SERVICE_NAME: "sentinel-svc",
        REDIS_SENTINELS: sentinels.map((s) => `127.0.0.1:${s.port}`).join(","),
        REDIS_SENTINEL_MASTER: MASTER_NAME,
        STREAM,
        CONSUMER_GROUP: GROUP,
        CONSUMER_NAME: "follower",
        LOG_LEVEL: "INFO",
      },
    }),
  );
  const masterClient = await master.client({ reconnect: false });
  const [before] = await preload(
    masterClient,
    STREAM,
    1,
    () => wireEntry("manual_test", "agg-0", { n: 0 }),
  );
  await svc.waitForLine(`Received manual_test ${before}`);
  // The replica has the group and the acknowledgement before the master dies.
  await masterClient.sendCommand(["WAIT", "1", "5000"]);

  await master.kill();
  const deadline = Date.now() + 30_000;
  const left = () => Math.max(0, deadline - Date.now());
  await waitFor(
    async () => (await svc.request("/health/ready", { timeoutMs: 1000 })).status === 503,
    {
      timeoutMs: left(),
      message: "/health/ready to answer 503 once the master is gone",
    },
  );
  await waitFor(async () => await sentinels[0].masterPort() === replica.port, {
    timeoutMs: left(),
    intervalMs: 100,
    message: "the sentinels to promote the replica",
  });
  await svc.waitReady(left());
  // A trigger publishes through the new master, and the consumer reads it back.
  const res = await svc.request("/trigger-test-event", { method: "POST", timeoutMs: left() });
  assertEquals(res.status, 200, res.text);
  const id = (res.json as { id: string }).id;
  await svc.waitForLine(`Received manual_test ${id}`, left());
  const entry = await replicaClient.sendCommand(["XRANGE", STREAM, id, id]) as unknown[];
  assertEquals(entry.length, 1, "the triggered entry is on the promoted replica");
  await waitFor(() => isDrained(replicaClient, STREAM, GROUP), {
    timeoutMs: left(),
    message: "nothing pending on the new master",
  });
  assert(Date.now() <= deadline, "within 30 s of the kill");
  console.log(`consuming from the promoted replica ${30_000 - left()} ms after the kill`);
});
