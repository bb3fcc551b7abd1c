/**
 * Unit tests of src/redis/breaker.ts: the consecutive-failure circuit breaker
 * driven by an injected fake clock (no timers, no Redis): opening at the
 * threshold, reset on success, fail-fast with `CircuitOpenError`, one trial in
 * half-open, closing and re-opening, state-change callbacks, `run()`, and the
 * constructor's argument checks.
 */
import { CircuitBreaker, CircuitOpenError, type CircuitState } from "../../src/redis/breaker.ts";
import { assertEquals, assertThrows } from "../support/assert.ts";

/** A clock the test moves by hand. */
function fakeClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

function breaker(threshold = 3, resetMs = 10_000) {
  const clock = fakeClock();
  const changes: string[] = [];
  const b = new CircuitBreaker({
    failureThreshold: threshold,
    resetMs,
    clock: clock.now,
    onStateChange: (from: CircuitState, to: CircuitState) => changes.push(`${from}->${to}`),
  });
  return { b, clock, changes };
}

function failTimes(b: CircuitBreaker, n: number): void {
  for (let i = 0; i < n; i++) {
    b.acquire();
    b.recordFailure();
  }
}

Deno.test("CircuitBreaker opens after threshold consecutive failures", () => {
  const { b } = breaker(3);
  assertEquals(b.state, "closed");
  failTimes(b, 2);
  assertEquals(b.state, "closed");
  assertEquals(b.failures, 2);
  failTimes(b, 1);
  assertEquals(b.state, "open");
});

Deno.test("CircuitBreaker.recordSuccess() resets the consecutive failure count", () => {
  const { b } = breaker(3);
  failTimes(b, 2);
  b.acquire();
  b.recordSuccess();
  assertEquals(b.failures, 0);
  failTimes(b, 2);
  assertEquals(b.state, "closed", "failures before a success must not count");
  failTimes(b, 1);
  assertEquals(b.state, "open");
});

Deno.test("CircuitBreaker.acquire() rejects with CircuitOpenError and retryAfterMs while open", () => {
  const { b, clock } = breaker(1, 10_000);
  failTimes(b, 1);
  const err = assertThrows(() => b.acquire(), CircuitOpenError);
  assertEquals(err.retryAfterMs, 10_000);
  assertEquals(b.retryAfterMs(), 10_000);
  clock.advance(4_000);
  assertEquals(assertThrows(() => b.acquire(), CircuitOpenError).retryAfterMs, 6_000);
  assertEquals(b.retryAfterMs(), 6_000);
  assertEquals(b.state, "open");
});

Deno.test("CircuitBreaker is half-open after resetMs and lets exactly one trial through", () => {
  const { b, clock } = breaker(2, 5_000);
  failTimes(b, 2);
  clock.advance(4_999);
  assertEquals(b.state, "open");
  clock.advance(1);
  assertEquals(b.state, "half_open");
  assertEquals(b.retryAfterMs(), 0);
  b.acquire(); // the trial
  const second = assertThrows(() => b.acquire(), CircuitOpenError);
  assertEquals(second.retryAfterMs >= 1, true, "a rejected caller gets a positive retry hint");
  assertThrows(() => b.acquire(), CircuitOpenError);
});

Deno.test("CircuitBreaker closes when the half-open trial succeeds", () => {
  const { b, clock } = breaker(2, 5_000);
  failTimes(b, 2);
  clock.advance(5_000);
  b.acquire();
  b.recordSuccess();
  assertEquals(b.state, "closed");
  assertEquals(b.failures, 0);
  b.acquire();
  b.acquire(); // closed: any number of calls
});

Deno.test("CircuitBreaker re-opens for a full resetMs when the half-open trial fails", () => {
  const { b, clock } = breaker(2, 5_000);
  failTimes(b, 2);
  clock.advance(5_000);
  b.acquire();
  b.recordFailure();
  assertEquals(b.state, "open");
  assertEquals(b.retryAfterMs(), 5_000);
  clock.advance(4_999);
  assertThrows(() => b.acquire(), CircuitOpenError);
  clock.advance(1);
  assertEquals(b.state, "half_open");
});

Deno.test("CircuitBreaker.release() gives the half-open trial back", () => {
  const { b, clock } = breaker(1, 1_000);
  failTimes(b, 1);
  clock.advance(1_000);
  b.acquire();
  b.release();
  b.acquire(); // allowed again: the first trial was never made
  assertEquals(b.state, "half_open");
});

Deno.test("CircuitBreaker calls onStateChange on every transition, in order", () => {
  const { b, clock, changes } = breaker(2, 1_000);
  failTimes(b, 2);
  clock.advance(1_000);
  b.acquire();
  b.recordFailure();
  clock.advance(1_000);
  b.acquire();
  b.recordSuccess();
  b.recordSuccess(); // no transition when already closed
  assertEquals(changes, [
    "closed->open",
    "open->half_open",
    "half_open->open",
    "open->half_open",
    "half_open->closed",
  ]);
});

Deno.test("new CircuitBreaker() throws RangeError for bad options", () => {
  assertThrows(() => new CircuitBreaker({ failureThreshold: 0 }), RangeError);
  assertThrows(() => new CircuitBreaker({ failureThreshold: 1.5 }), RangeError);
  assertThrows(() => new CircuitBreaker({ resetMs: -1 }), RangeError);
  assertThrows(() => new CircuitBreaker({ resetMs: Number.NaN }), RangeError);
  assertEquals(new CircuitBreaker().state, "closed");
});
