/**
 * Integration tests of the deadlines `ConnectionManager` keeps itself (node-redis drops a
 * command's timeout once the command is written), against a real redis-server frozen with
 * SIGSTOP: a command through `exec` and a blocking read on the blocking client each reject
 * when their deadline passes, the connection is replaced, and it is back by itself after SIGCONT.
 *
 * @module
 */

import { DeadlineError } from "../../src/clock.ts";
import { ConnectionManager, NotConnectedError } from "../../src/redis/connection.ts";
import { assert, assertEquals, assertRejects } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { testConfig } from "../support/in_process_consumer.ts";

async function pausedConnection(
  cleanup: Cleanup,
  redis: RedisServer,
): Promise<ConnectionManager> {
  const config = testConfig(redis, { CONNECTION_TIMEOUT: "500" });
  const connection = new ConnectionManager({ redis: config.redis, clientName: "t" });
  cleanup.add(() => connection.close());
  await connection.connect();
  await redis.pause();
  cleanup.add(() => redis.resume()); // before the server's stop, should an assertion fail
  return connection;
}

Deno.test("ConnectionManager.exec() rejects at its deadline on a stopped Redis and replaces the connection", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const connection = await pausedConnection(cleanup, redis);
  const generation = connection.generation;
  const err = await assertRejects(
    () => connection.exec((c) => c.sendCommand(["GET", "k"])),
    NotConnectedError,
  );
  assert(err.cause instanceof DeadlineError, `cause: ${String(err.cause)}`);
  assertEquals(connection.connected, false, "the hung connection is given up at once");
  await redis.resume();
  assertEquals(await connection.waitConnected(AbortSignal.timeout(20_000)), true);
  assert(connection.generation > generation, "a new pair of clients");
  assertEquals(await connection.exec((c) => c.sendCommand(["PING"])), "PONG");
});

Deno.test("the blocking client's XREADGROUP rejects at BLOCK_MS + its timeout on a stopped Redis", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  await client.sendCommand(["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]);
  const connection = await pausedConnection(cleanup, redis);
  const read = connection.blocking.sendCommand(
    ["XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "BLOCK", "200", "STREAMS", "s", ">"],
    { timeout: 200 + 500 },
  );
  await assertRejects(() => read, DeadlineError);
  assertEquals(connection.connected, false, "the hung blocking connection is replaced");
  await redis.resume();
  assertEquals(await connection.waitConnected(AbortSignal.timeout(20_000)), true);
});
