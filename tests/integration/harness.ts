/**
 * Shared setup of the consumer integration tests: runs a `StreamConsumer` in this process against
 * a real redis-server (config from an env map, its own `ConnectionManager`), registers its stop
 * and the connection's close in a `Cleanup`, and offers the few Redis helpers that default to the
 * tests' group `itest` (pending count, consumer list, group creation, a "ghost" reader) and a
 * gate for handlers. Wire-format entries, XADD, XRANGE, XLEN, XPENDING entries and XINFO GROUPS
 * are in `tests/support/streams.ts`.
 *
 * @module
 */

import { type Config, loadConfig } from "../../src/config.ts";
import { ConnectionManager } from "../../src/redis/connection.ts";
import { StreamConsumer } from "../../src/stream/consumer/consumer.ts";
import { consumerSettings } from "../../src/stream/consumer/settings.ts";
import { HandlerRegistry } from "../../src/stream/handlers.ts";
import { Router } from "../../src/stream/router.ts";
import { setupLogging } from "../../src/log.ts";
import type { Cleanup } from "../support/cleanup.ts";
import type { RedisClient, RedisServer } from "../support/redis_server.ts";
import { pairs, pendingSummary } from "../support/streams.ts";

// `TEST_LOG=DEBUG deno test …` shows the service's log lines while debugging a test.
const testLog = Deno.env.get("TEST_LOG")?.toUpperCase();
if (testLog === "DEBUG" || testLog === "INFO" || testLog === "WARN" || testLog === "ERROR") {
  setupLogging({ level: testLog });
}

/** Group every test uses unless it sets CONSUMER_GROUP. */
export const GROUP = "itest";

/** A consumer running in this process. */
export interface RunningConsumer {
  config: Config;
  connection: ConnectionManager;
  consumer: StreamConsumer;
  registry: HandlerRegistry;
  /** Stops the consumer (10 s budget); true when everything settled. Cleanup calls it too. */
  stop(): Promise<boolean>;
}

/**
 * The configuration for `redis` with quick loops (BLOCK_MS 200, CLAIM_IDLE_MS 1000), group
 * `itest`, consumer `c1`, stream `s`, STREAM_START_ID 0; `env` overrides any of them.
 */
export function testConfig(redis: RedisServer, env: Record<string, string> = {}): Config {
  return loadConfig({
    ...redis.env(),
    SERVICE_NAME: "itest",
    STREAM: "s",
    CONSUMER_GROUP: GROUP,
    CONSUMER_NAME: "c1",
    STREAM_START_ID: "0",
    BLOCK_MS: "200",
    CLAIM_IDLE_MS: "1000",
    MAX_RETRY_ATTEMPTS: "1",
    RETRY_DELAYS: "100",
    CONNECTION_TIMEOUT: "2000",
    ...env,
  });
}

/** Connects and starts a consumer for `redis` (see `testConfig` for the defaults). */
export async function startConsumer(
  cleanup: Cleanup,
  redis: RedisServer,
  env: Record<string, string> = {},
  registry: HandlerRegistry = new HandlerRegistry(),
): Promise<RunningConsumer> {
  const config = testConfig(redis, env);
  const connection = new ConnectionManager({ redis: config.redis, clientName: "t" });
  cleanup.add(() => connection.close());
  await connection.connect();
  const consumer = new StreamConsumer({
    settings: { ...consumerSettings(config), statsIntervalMs: 100 },
    connection,
    registry,
    router: new Router(config.stream.routes),
  });
  const stop = () => consumer.stop(Date.now() + 10_000);
  cleanup.add(stop);
  await consumer.start();
  return { config, connection, consumer, registry, stop };
}

/** Number of entries pending in `group` of `stream` (0 when the stream or group is missing). */
export async function pendingCount(
  client: RedisClient,
  stream: string,
  group = GROUP,
): Promise<number> {
  try {
    return (await pendingSummary(client, stream, group)).total;
  } catch {
    return 0;
  }
}

/** Consumers of `group` as XINFO CONSUMERS reports them. */
export async function consumers(
  client: RedisClient,
  stream: string,
  group = GROUP,
): Promise<{ name: string; pending: number; idle: number }[]> {
  const reply = await client.sendCommand(["XINFO", "CONSUMERS", stream, group]) as unknown[][];
  return reply.map((raw) => {
    const c = pairs(raw.map(String));
    return { name: c.name, pending: Number(c.pending), idle: Number(c.idle) };
  });
}

/**
 * Reads up to `count` new entries of `stream` as consumer `name` without acknowledging them
 * (a "ghost" consumer that dies holding them); returns their ids.
 */
export async function readAsGhost(
  client: RedisClient,
  stream: string,
  name: string,
  count: number,
  group = GROUP,
): Promise<string[]> {
  const reply = await client.sendCommand([
    "XREADGROUP",
    "GROUP",
    group,
    name,
    "COUNT",
    String(count),
    "STREAMS",
    stream,
    ">",
  ]) as [string, [string, string[]][]][] | null;
  return (reply?.[0]?.[1] ?? []).map(([id]) => id);
}

/** XGROUP CREATE … MKSTREAM at `startId` (default 0). */
export async function createGroup(
  client: RedisClient,
  stream: string,
  group = GROUP,
  startId = "0",
): Promise<void> {
  await client.sendCommand(["XGROUP", "CREATE", stream, group, startId, "MKSTREAM"]);
}

/** A promise with its resolve function exposed: a gate handlers wait on. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}
