/**
 * Self-test of the pure parts of the test support (`tests/support/`): assertions,
 * waitFor/gate/freePort, Cleanup, jsonLines, and the judges of the partition scenario and of
 * exactly-once coverage. The redis-server lifecycle is tested in
 * `tests/integration/redis_server_test.ts`; startService is exercised by the e2e tests.
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
} from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { jsonLines } from "../support/service.ts";
import { freePort, gate, waitFor } from "../support/wait.ts";
import { assertInOrder, evenOver } from "../support/partition_scenario.ts";
import { assertExactlyOnce } from "../support/coverage.ts";

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
  const err = await assertRejects(
    () =>
      waitFor(() => {
        throw new Error("connection refused");
      }, { timeoutMs: 150, message: "Redis to answer" }),
    Error,
    "Timed out waiting for Redis to answer after",
  );
  assertStringIncludes(err.message, "last probe error: Error: connection refused");
  const waited = Number(/after (\d+) ms/.exec(err.message)?.[1]);
  assert(waited >= 150, `gave up before its deadline: ${err.message}`);

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

Deno.test("gate() resolves its promise only once the test opens it", async () => {
  const g = gate();
  let passed = false;
  const waiter = g.promise.then(() => (passed = true));
  for (let i = 0; i < 10; i++) await Promise.resolve(); // let any settled promise run on
  assertEquals(passed, false, "passed a shut gate");
  g.open();
  g.open(); // idempotent
  await waiter;
  assertEquals(passed, true);
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

Deno.test("evenOver() and assertInOrder() of the partition scenario judge what they say", () => {
  assert(evenOver(["a", "b", "a"], ["a", "b"]));
  assert(!evenOver(["a", "a", "a", "b"], ["a", "b"]), "3 against 1");
  assert(!evenOver(["a", undefined], ["a"]), "a partition without a lease");
  assert(!evenOver(["a", "c"], ["a", "b"]), "an owner not among the names");

  const entry = (aggregateId: string, n: number) => ({
    id: `${n}-0`,
    fields: { aggregateId, payload: JSON.stringify({ n }) },
  });
  const seq = new Map([["x", 2], ["y", 1]]);
  assertInOrder([entry("x", 1), entry("y", 1), entry("x", 2)], seq);
  assertThrows(() => assertInOrder([entry("x", 2), entry("x", 1), entry("y", 1)], seq));
  assertThrows(
    () => assertInOrder([entry("x", 1), entry("y", 1)], seq),
    AssertionError,
    "all of x",
  );
  assertThrows(
    () => assertInOrder([entry("x", 1), entry("y", 1), entry("x", 2), entry("x", 2)], seq),
    AssertionError,
    "order of x",
  );
});

Deno.test("assertExactlyOnce() fails on a missing, a doubled or an unknown copy", () => {
  const copy = (sourceId: string, n: number) => ({
    id: `${n}-0`,
    fields: { headers: JSON.stringify({ sourceId }) },
  });
  assertExactlyOnce([copy("1-0", 1), copy("2-0", 2)], ["2-0", "1-0"], "out");
  const expected = ["1-0", "2-0"];
  const missing = [copy("1-0", 1)];
  const doubled = [copy("1-0", 1), copy("2-0", 2), copy("2-0", 3)];
  const unknown = [copy("1-0", 1), copy("9-0", 2)];
  for (const target of [missing, doubled, unknown]) {
    assertThrows(
      () => assertExactlyOnce(target, expected, "out"),
      AssertionError,
      "coverage of out",
    );
  }
});
