/**
 * Unit tests of src/http/rate_limit.ts: the per-client token bucket driven by
 * a fake clock: burst (default 10), refill, per-client isolation, Retry-After
 * seconds, fractional rates and the bound on remembered clients (least recently
 * seen forgotten first).
 */
import { DEFAULT_RATE_LIMIT_BURST, RateLimiter } from "../../src/http/rate_limit.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";

function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 5_000_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

Deno.test("RateLimiter.take() allows a burst of 10 by default, then refuses", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ ratePerSecond: 1, clock: clock.now });
  assertEquals(DEFAULT_RATE_LIMIT_BURST, 10);
  for (let i = 0; i < 10; i++) assert(limiter.take("a").allowed, `request ${i + 1}`);
  const refused = limiter.take("a");
  assertEquals(refused.allowed, false);
  assertEquals(refused.retryAfterSeconds, 1);
});

Deno.test("RateLimiter.take() honours an explicit burst", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ ratePerSecond: 1, burst: 2, clock: clock.now });
  assertEquals(limiter.take("a").allowed, true);
  assertEquals(limiter.take("a").allowed, true);
  assertEquals(limiter.take("a").allowed, false);
});

Deno.test("RateLimiter.take() refills at the rate", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ ratePerSecond: 1, burst: 1, clock: clock.now });
  assertEquals(limiter.take("a"), { allowed: true, retryAfterSeconds: 0 });
  assertEquals(limiter.take("a").allowed, false);
  clock.advance(999);
  assertEquals(limiter.take("a").allowed, false);
  clock.advance(1);
  assertEquals(limiter.take("a").allowed, true);
  // A long idle time does not bank more than the burst.
  clock.advance(60_000);
  assertEquals(limiter.take("a").allowed, true);
  assertEquals(limiter.take("a").allowed, false);
});

Deno.test("RateLimiter.take() keeps clients apart", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ ratePerSecond: 1, burst: 1, clock: clock.now });
  assertEquals(limiter.take("10.0.0.1").allowed, true);
  assertEquals(limiter.take("10.0.0.1").allowed, false);
  assertEquals(limiter.take("10.0.0.2").allowed, true);
  assertEquals(limiter.take("10.0.0.2").allowed, false);
});

Deno.test("RateLimiter.take() answers retryAfterSeconds of at least 1 when refused", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ ratePerSecond: 100, burst: 100, clock: clock.now });
  for (let i = 0; i < 100; i++) assert(limiter.take("a").allowed);
  const refused = limiter.take("a");
  assertEquals(refused.allowed, false);
  assertEquals(refused.retryAfterSeconds, 1, "10 ms of wait still rounds up to 1 s");
});

Deno.test("RateLimiter.take() handles fractional rates", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ ratePerSecond: 0.5, burst: 1, clock: clock.now });
  assertEquals(limiter.take("a").allowed, true);
  assertEquals(limiter.take("a"), { allowed: false, retryAfterSeconds: 2 });
  clock.advance(1_000);
  assertEquals(limiter.take("a"), { allowed: false, retryAfterSeconds: 1 });
  clock.advance(1_000);
  assertEquals(limiter.take("a").allowed, true);

  const fast = new RateLimiter({ ratePerSecond: 2.5, burst: 2, clock: clock.now });
  assertEquals([1, 2, 3].map(() => fast.take("b").allowed), [true, true, false]);
  clock.advance(400); // 2.5/s · 0.4 s = 1 token
  assertEquals(fast.take("b").allowed, true);
});

Deno.test("RateLimiter remembers at most maxClients clients", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({
    ratePerSecond: 1,
    burst: 1,
    clock: clock.now,
    maxClients: 3,
  });
  for (let i = 0; i < 50; i++) {
    limiter.take(`client-${i}`);
    clock.advance(1);
    assert(limiter.size <= 3, `size ${limiter.size} over maxClients`);
  }
  assertEquals(limiter.size, 3);
  // The most recent client is still remembered (its bucket is empty).
  assertEquals(limiter.take("client-49").allowed, false);
});

Deno.test("RateLimiter forgets the least recently seen client first", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({
    ratePerSecond: 1,
    burst: 1,
    clock: clock.now,
    maxClients: 2,
  });
  limiter.take("a");
  limiter.take("b");
  limiter.take("a"); // refused, but seen: "b" is now the least recent
  limiter.take("c"); // evicts "b"
  assertEquals(limiter.size, 2);
  assertEquals(limiter.take("a").allowed, false, "a is still remembered with an empty bucket");
  assertEquals(
    limiter.take("b").allowed,
    true,
    "b was forgotten and comes back with a full bucket",
  );
});

Deno.test("new RateLimiter() throws RangeError for a rate of 0 or a burst below 1", () => {
  assertThrows(() => new RateLimiter({ ratePerSecond: 0 }), RangeError);
  assertThrows(() => new RateLimiter({ ratePerSecond: -1 }), RangeError);
  assertThrows(() => new RateLimiter({ ratePerSecond: 1, burst: 0.5 }), RangeError);
});
