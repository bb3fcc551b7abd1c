/**
 * Unit tests of src/redis/backoff.ts: `retryDelay` over the configured
 * RETRY_DELAYS list (last value repeats, attempt validation) and
 * `exponentialBackoff` growth, cap and jitter bounds with an injected random source.
 */
import { exponentialBackoff, retryDelay } from "../../src/redis/backoff.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";

Deno.test("retryDelay() follows the list and repeats its last value", () => {
  const delays = [5000, 15000, 30000];
  assertEquals(retryDelay(delays, 1), 5000);
  assertEquals(retryDelay(delays, 2), 15000);
  assertEquals(retryDelay(delays, 3), 30000);
  assertEquals(retryDelay(delays, 4), 30000);
  assertEquals(retryDelay(delays, 100), 30000);
  assertEquals(retryDelay([250], 7), 250);
});

Deno.test("retryDelay() throws RangeError for an attempt below 1 or not an integer", () => {
  for (const attempt of [0, -1, 1.5, Number.NaN]) {
    assertThrows(() => retryDelay([1, 2], attempt), RangeError);
  }
});

Deno.test("retryDelay() is 0 for an empty list", () => {
  assertEquals(retryDelay([], 1), 0);
});

Deno.test("exponentialBackoff() grows by the multiplier without jitter", () => {
  const opts = { minMs: 100, maxMs: 100_000, multiplier: 2, jitter: 0 };
  assertEquals([1, 2, 3, 4, 5].map((a) => exponentialBackoff(a, opts)), [100, 200, 400, 800, 1600]);
  assertEquals(exponentialBackoff(3, { ...opts, multiplier: 3 }), 900);
});

Deno.test("exponentialBackoff() is capped at maxMs, even for huge attempts", () => {
  const opts = { minMs: 100, maxMs: 5_000, jitter: 0 };
  assertEquals(exponentialBackoff(7, opts), 5_000);
  assertEquals(exponentialBackoff(10_000, opts), 5_000);
  for (const r of [0, 0.5, 0.999999]) {
    const d = exponentialBackoff(20, { random: () => r });
    assert(d >= 24_000 && d <= 30_000, `delay ${d} past the default cap or below its jitter`);
  }
  assertEquals(
    exponentialBackoff(6, { minMs: 1000, maxMs: 30_000, random: () => 0.999999 }),
    30_000,
  );
});

Deno.test("exponentialBackoff() keeps jitter within base ± jitter·base", () => {
  const opts = { minMs: 1000, maxMs: 60_000, jitter: 0.2 };
  assertEquals(exponentialBackoff(1, { ...opts, random: () => 0 }), 800);
  assertEquals(exponentialBackoff(1, { ...opts, random: () => 0.5 }), 1000);
  assertEquals(exponentialBackoff(1, { ...opts, random: () => 0.999999 }), 1200);
  assertEquals(exponentialBackoff(2, { ...opts, random: () => 0 }), 1600);
  for (let i = 0; i < 50; i++) {
    const d = exponentialBackoff(3, opts);
    assert(d >= 3200 && d <= 4800, `jittered delay ${d} out of [3200, 4800]`);
  }
});

Deno.test("exponentialBackoff() throws RangeError for an attempt below 1", () => {
  assertThrows(() => exponentialBackoff(0), RangeError);
  assertThrows(() => exponentialBackoff(Number.NaN), RangeError);
});
