/**
 * Runs a `StreamConsumer` in this process against a real redis-server, for the integration
 * tests: its configuration from an env map with quick loops (group `itest`, consumer `c1`,
 * stream `s`), its own `ConnectionManager`, and its stop and the connection's close registered
 * in a `Cleanup`. The Redis-side helpers (group creation, a "ghost" reader, pending counts,
 * XINFO) are in `streams.ts`; the gate handlers await is in `wait.ts`.
 *
 * @module
 */

import { type Config, loadConfig } from "../../src/config.ts";
import { ConnectionManager } from "../../src/redis/connection.ts";
import { StreamConsumer } from "../../src/stream/consumer/consumer.ts";
import { type ConsumerSettings, consumerSettings } from "../../src/stream/consumer/settings.ts";
import { HandlerRegistry } from "../../src/stream/handlers.ts";
import { Router } from "../../src/stream/router.ts";
import { setupLogging } from "../../src/log.ts";
import type { Cleanup } from "./cleanup.ts";
import type { RedisServer } from "./redis_server.ts";

// `TEST_LOG=DEBUG deno test …` shows the service's log lines while debugging a test.
const testLog = Deno.env.get("TEST_LOG")?.toUpperCase();
if (testLog === "DEBUG" || testLog === "INFO" || testLog === "WARN" || testLog === "ERROR") {
  setupLogging({ level: testLog });
}

/** Group of the consumers started here unless `env` sets CONSUMER_GROUP. */
export const GROUP = "itest";

/** A registry whose fallback handler records the id of every entry it handles, in order. */
export function recordingRegistry(): { registry: HandlerRegistry; handled: string[] } {
  const handled: string[] = [];
  const registry = new HandlerRegistry().fallback((e) => {
    handled.push(e.id);
  });
  return { registry, handled };
}

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

/**
 * Connects and starts a consumer for `redis` (see `testConfig` for the defaults); `settings`
 * overrides settings no variable sets (e.g. `outboxAcrossSlots` on a single Redis).
 */
export async function startConsumer(
  cleanup: Cleanup,
  redis: RedisServer,
  env: Record<string, string> = {},
  registry: HandlerRegistry = new HandlerRegistry(),
  settings: Partial<ConsumerSettings> = {},
): Promise<RunningConsumer> {
  const config = testConfig(redis, env);
  const connection = new ConnectionManager({ redis: config.redis, clientName: "t" });
  cleanup.add(() => connection.close());
  await connection.connect();
  const consumer = new StreamConsumer({
    settings: { ...consumerSettings(config), statsIntervalMs: 100, ...settings },
    connection,
    registry,
    router: new Router(config.stream.routes),
  });
  const stop = () => consumer.stop(Date.now() + 10_000);
  cleanup.add(stop);
  await consumer.start();
  return { config, connection, consumer, registry, stop };
}
