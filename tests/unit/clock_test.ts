/**
 * `raceDeadline` and `withDeadline` (src/clock.ts), which run around every Redis
 * command: they settle as the promise does, or at the deadline, and leave no
 * timer behind (the test sanitizer fails a test that leaks one).
 */
import { DeadlineError, raceDeadline, withDeadline } from "../../src/clock.ts";
import { assertEquals, assertRejects } from "../support/assert.ts";

const never = () => new Promise<never>(() => {});

Deno.test("raceDeadline() settles as the promise does before the deadline", async () => {
  assertEquals(await raceDeadline(Promise.resolve(1), 60_000, "late"), 1);
  await assertRejects(
    () => raceDeadline(Promise.reject(new Error("boom")), 60_000, 0),
    Error,
    "boom",
  );
});

Deno.test("raceDeadline() resolves with the fallback at the deadline", async () => {
  assertEquals(await raceDeadline(never(), 1, "late"), "late");
});

Deno.test("withDeadline() settles as the promise does before the deadline", async () => {
  assertEquals(await withDeadline(Promise.resolve("ok"), 60_000), "ok");
  await assertRejects(() => withDeadline(Promise.reject(new Error("boom")), 60_000), Error, "boom");
});

Deno.test("withDeadline() rejects with a DeadlineError at the deadline", async () => {
  let reject!: (e: Error) => void;
  const late = new Promise<never>((_, r) => (reject = r));
  const err = await assertRejects(() => withDeadline(late, 1), DeadlineError);
  assertEquals(err.name, "TimeoutError");
  reject(new Error("after the deadline")); // ignored: no unhandled rejection
});
