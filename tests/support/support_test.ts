/**
 * Self-test of the test support: assertions, waitFor/freePort, Cleanup, jsonLines, and the
 * redis-server lifecycle (start, client, kill, restart with AOF, pause/resume, stop).
 * startService is exercised by the integration and e2e tests once main.ts exists.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  AssertionError,
  assertMatch,
  assertRejects,
  assertStringIncludes,
  assertThrows,
  fail,
} from "./assert.ts";
import { Cleanup } from "./cleanup.ts";
import { probeRedis, startRedis } from "./redis_server.ts";
import { jsonLines } from "./service.ts";
import { freePort, waitFor } from "./wait.ts";

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

Deno.test("assertEquals() accepts deep-equal values and shows a diff otherwise", () => {
  assertEquals({ a: [1, { b: new Date(0) }], m: new Map([["k", new Set([1])]]) }, {
    m: new Map([["k", new Set([1])]]),
    a: [1, { b: new Date(0) }],
  });
  assertEquals(NaN, NaN);
  const err = assertThrows(
    () => assertEquals({ a: 1, b: "x" }, { a: 2, b: "x" }, "config"),
    AssertionError,
  );
  assertStringIncludes(err.message, "config: values are not equal");
  assertStringIncludes(err.message, "[-]   a: 1,");
  assertStringIncludes(err.message, "[+]   a: 2,");
  assertThrows(() => assertEquals([1, 2], [1, 2, 3]), AssertionError);
  assertThrows(() => assertEquals({ a: undefined }, {}), AssertionError);
  assertThrows(() => assertEquals(new (class A {})(), {}), AssertionError);
  assertEquals(Object.assign(Object.create(null), { field: "1" }), { field: "1" });
});

Deno.test("assertThrows()/assertRejects() check class and message, and return the error", async () => {
  const e = assertThrows(
    () => {
      throw new RangeError("too big");
    },
    RangeError,
    "big",
  );
  assertEquals(e.message, "too big");
  assertThrows(() => assertThrows(() => {}), AssertionError, "Expected function to throw");
  assertThrows(
    () =>
      assertThrows(() => {
        throw new TypeError("x");
      }, RangeError),
    AssertionError,
    "instance of RangeError",
  );
  const r = await assertRejects(() => Promise.reject(new TypeError("bad input")), TypeError, "bad");
  assertEquals(r.name, "TypeError");
  await assertRejects(
    () => assertRejects(() => Promise.resolve(42)),
    AssertionError,
    "it resolved to 42",
  );
  assertMatch("redis-stream", /^redis-/);
  assertThrows(() => assertMatch("abc", /^x/), AssertionError, "to match");
  assertThrows(() => fail("boom"), AssertionError, "boom");
  assertThrows(() => assert(false, "nope"), AssertionError, "nope");
});

Deno.test("waitFor() returns the first truthy probe value", async () => {
  let n = 0;
  const value = await waitFor(() => ++n >= 3 && `done after ${n}`, { intervalMs: 1 });
  assertEquals(value, "done after 3");
});

Deno.test("waitFor() times out with the message and the last probe error", async () => {
  const started = Date.now();
  const err = await assertRejects(
    () =>
      waitFor(() => {
        throw new Error("connection refused");
      }, { timeoutMs: 150, message: "Redis to answer" }),
    Error,
    "Timed out waiting for Redis to answer after",
  );
  assertStringIncludes(err.message, "last probe error: Error: connection refused");
  assert(Date.now() - started < 2_000, "waitFor overran its deadline");

  const err2 = await assertRejects(() => waitFor(() => 0, { timeoutMs: 50 }));
  assertStringIncludes(err2.message, "last value: 0");

  const hung = await assertRejects(() =>
    waitFor(() => new Promise<never>(() => {}), { timeoutMs: 50 })
  );
  assertStringIncludes(hung.message, "still running at the deadline");
});

Deno.test("waitFor() stops early with the abort reason, after one last probe", async () => {
  const controller = new AbortController();
  controller.abort(new Error("process exited"));
  await assertRejects(() => waitFor(() => false, { signal: controller.signal }), Error, "exited");
  assertEquals(await waitFor(() => "late line", { signal: controller.signal }), "late line");
});

Deno.test("freePort() returns distinct bindable ports, never 6379", () => {
  const ports = new Set<number>();
  for (let i = 0; i < 20; i++) {
    const port = freePort();
    assert(port > 0 && port < 65536 && port !== 6379, `bad port ${port}`);
    ports.add(port);
  }
  assertEquals(ports.size, 20);
  const port = freePort();
  Deno.listen({ hostname: "127.0.0.1", port }).close();
});

Deno.test("Cleanup runs steps in reverse order and keeps going after a failure", async () => {
  const order: string[] = [];
  const cleanup = new Cleanup();
  cleanup.add(() => order.push("first"));
  cleanup.add(() => {
    throw new Error("second failed");
  });
  cleanup.add(async () => {
    await Promise.resolve();
    order.push("third");
  });
  cleanup.use({ [Symbol.dispose]: () => order.push("disposable") });
  const errors = await cleanup.run();
  assertEquals(order, ["disposable", "third", "first"]);
  assertEquals(errors.length, 1);
  assertEquals(await cleanup.run(), []);
});

Deno.test("jsonLines() parses JSON objects and skips other lines", () => {
  const out = [
    '{"level":"INFO","message":"started"}',
    "2025-06-28T23:40:13.653Z INFO  [main] text line",
    "[1,2]",
    "{broken",
    '  {"level":"DEBUG","n":1}\r',
  ].join("\n");
  assertEquals(jsonLines(out), [{ level: "INFO", message: "started" }, { level: "DEBUG", n: 1 }]);
});

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
