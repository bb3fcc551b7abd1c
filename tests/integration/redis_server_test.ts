/**
 * Self-test of the redis-server lifecycle of `tests/support/redis_server.ts`: start, clients,
 * stop, kill, restart with AOF, pause/resume, and a taken port.
 *
 * @module
 */

import { assert, assertEquals, assertMatch, assertRejects } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { probeRedis, startRedis } from "../support/redis_server.ts";
import { freePort, waitFor } from "../support/wait.ts";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

function processAlive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT"); // Harmless probe: fails with ESRCH when the process is gone.
    return true;
  } catch {
    return false;
  }
}

Deno.test("startRedis() serves clients and stop() ends the process and removes its dir", async () => {
  const redis = await startRedis();
  const { pid, dir } = redis;
  try {
    assert(redis.port !== 6379);
    assertEquals(redis.env(), { REDIS_HOST: "127.0.0.1", REDIS_PORT: String(redis.port) });
    const client = await redis.client();
    await client.set("greeting", "hello");
    assertEquals(await client.get("greeting"), "hello");
    assertEquals(await client.configGet("appendonly"), { appendonly: "no" });
    await client.hSet("h", { a: "1", b: "2" });
    assertEquals(await client.hGetAll("h"), { b: "2", a: "1" });
    assert(await probeRedis(redis.port, { expectPid: pid }));
  } finally {
    await redis.stop();
  }
  assert(!redis.running, "still running after stop()");
  assert(!processAlive(pid), `redis-server ${pid} still alive`);
  assert(!(await exists(dir)), `${dir} not removed`);
  assert(!(await probeRedis(redis.port, { timeoutMs: 200 })));
  await redis.stop(); // Idempotent.
});

Deno.test("kill() and restart() keep AOF data, port and dir; clients reconnect", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(
    await startRedis({ appendonly: true, args: ["--appendfsync", "always"] }),
  );
  const client = await redis.client();
  await client.set("survivor", "yes");
  const { port, pid } = redis;

  await redis.kill();
  assert(!redis.running && !processAlive(pid), "still running after kill()");
  assert(await exists(redis.dir), "dir removed by kill()");

  await redis.restart();
  assertEquals(redis.port, port);
  assert(redis.pid !== pid, "restart() did not start a new process");
  const fresh = await redis.client();
  assertEquals(await fresh.get("survivor"), "yes");
  // The client created before the kill reconnects by itself.
  assertEquals(await waitFor(() => client.get("survivor"), { message: "old client" }), "yes");
  assertMatch(await redis.log(), /Ready to accept connections/);

  const secondPid = redis.pid;
  await redis.restart(); // While running: SIGTERM first, then start again.
  assert(redis.pid !== secondPid && !processAlive(secondPid), "old process survived restart()");
  assertEquals(
    await waitFor(() => fresh.get("survivor"), { message: "client after restart" }),
    "yes",
  );
});

Deno.test("pause() freezes the server and resume() thaws it", async () => {
  await using redis = await startRedis();
  await redis.pause();
  assert(!(await probeRedis(redis.port, { timeoutMs: 200 })), "paused server answered");
  await redis.resume();
  assert(await probeRedis(redis.port), "resumed server did not answer");
  await redis.pause(); // stop() must also end a paused server.
});

Deno.test("startRedis() on a taken explicit port rejects with the server log", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: freePort() });
  try {
    const { port } = listener.addr;
    const err = await assertRejects(
      () => startRedis({ port, startTimeoutMs: 5_000 }),
      Error,
      `did not start on port ${port}`,
    );
    assertMatch(err.message, /address already in use/i);
  } finally {
    listener.close();
  }
});
