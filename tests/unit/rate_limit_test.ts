/**
 * Unit tests of src/http/rate_limit.ts: the per-client token bucket driven by
 * a fake clock: burst, refill, per-client isolation, Retry-After seconds,
 * fractional rates and the bound on remembered clients.
 */
import { RateLimiter } from "../../src/http/rate_limit.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";

function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 5_000_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

Deno.test("RateLimiter.take() allows the burst, then refuses", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ ratePerSecond: 3, clock: clock.now });
  assertEquals([1, 2, 3].map(() => limiter.take("a").allowed), [true, true, true]);
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
  const limiter = new RateLimiter({ ratePerSecond: 1, clock: clock.now });
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
  const limiter = new RateLimiter({ ratePerSecond: 1, clock: clock.now });
  assertEquals(limiter.take("10.0.0.1").allowed, true);
  assertEquals(limiter.take("10.0.0.1").allowed, false);
  assertEquals(limiter.take("10.0.0.2").allowed, true);
  assertEquals(limiter.take("10.0.0.2").allowed, false);
});

Deno.test("RateLimiter.take() answers retryAfterSeconds of at least 1 when refused", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ ratePerSecond: 100, clock: clock.now });
  for (let i = 0; i < 100; i++) assert(limiter.take("a").allowed);
  const refused = limiter.take("a");
  assertEquals(refused.allowed, false);
  assertEquals(refused.retryAfterSeconds, 1, "10 ms of wait still rounds up to 1 s");
});

Deno.test("RateLimiter.take() handles fractional rates", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ ratePerSecond: 0.5, clock: clock.now });
  assertEquals(limiter.take("a").allowed, true);
  assertEquals(limiter.take("a"), { allowed: false, retryAfterSeconds: 2 });
  clock.advance(1_000);
  assertEquals(limiter.take("a"), { allowed: false, retryAfterSeconds: 1 });
  clock.advance(1_000);
  assertEquals(limiter.take("a").allowed, true);

  const fast = new RateLimiter({ ratePerSecond: 2.5, clock: clock.now });
  assertEquals([1, 2, 3].map(() => fast.take("b").allowed), [true, true, false]);
  clock.advance(400); // 2.5/s · 0.4 s = 1 token
  assertEquals(fast.take("b").allowed, true);
});

Deno.test("RateLimiter remembers at most maxClients clients", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ ratePerSecond: 1, clock: clock.now, maxClients: 3 });
  for (let i = 0; i < 50; i++) {
    limiter.take(`client-${i}`);
    clock.advance(1);
    assert(limiter.size <= 3, `size ${limiter.size} over maxClients`);
  }
  assertEquals(limiter.size, 3);
  // The most recent client is still remembered (its bucket is empty).
  assertEquals(limiter.take("client-49").allowed, false);
});

Deno.test("new RateLimiter() throws RangeError for a rate of 0 or a burst below 1", () => {
  assertThrows(() => new RateLimiter({ ratePerSecond: 0 }), RangeError);
  assertThrows(() => new RateLimiter({ ratePerSecond: -1 }), RangeError);
  assertThrows(() => new RateLimiter({ ratePerSecond: 1, burst: 0.5 }), RangeError);
});
