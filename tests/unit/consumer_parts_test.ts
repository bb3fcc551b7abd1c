/**
 * The consumer's pure parts: the failure policy, the schedule of intervals, the stats board,
 * the in-flight registry and the key schema (the settle encoding: `settle_codec_test.ts`). No
 * Redis.
 */
import { assert, assertEquals, assertThrows } from "../support/assert.ts";
import {
  deadLetterFields,
  MAX_DEAD_LETTER_ERROR,
  onFailure,
  overDeliveryLimit,
} from "../../src/stream/consumer/failure_policy.ts";
import { schedule } from "../../src/stream/consumer/schedule.ts";
import { StatsBoard } from "../../src/stream/consumer/stats.ts";
import { idNumber, InFlight } from "../../src/stream/consumer/in_flight.ts";
import { entryRecord } from "../../src/stream/entry.ts";
import { MAX_EVENT_LABELS, OutcomeCounter } from "../../src/stream/consumer/outcomes.ts";
import { DEAD_LETTER_FIELDS, KeySchema, sameSlot } from "../../src/stream/keys.ts";

Deno.test("onFailure() retries with a growing delay below MAX_DELIVERIES", () => {
  const base = { maxDeliveries: 5, error: "boom", stopping: false, retryMaxDelayMs: 10_000 };
  const random = () => 0.5; // no jitter offset
  const first = onFailure({ ...base, deliveries: 1, random });
  const third = onFailure({ ...base, deliveries: 3, random });
  assertEquals(first, { action: "retry", delayMs: 100 });
  assertEquals(third, { action: "retry", delayMs: 400 });
});

Deno.test("onFailure() caps the retry delay at retryMaxDelayMs", () => {
  const d = onFailure({
    deliveries: 20,
    maxDeliveries: 50,
    error: "x",
    stopping: false,
    retryMaxDelayMs: 500,
    random: () => 0.99,
  });
  assert(d.action === "retry" && d.delayMs <= 500, JSON.stringify(d));
});

Deno.test("onFailure() dead-letters at MAX_DELIVERIES, even while stopping", () => {
  for (const stopping of [false, true]) {
    assertEquals(
      onFailure({ deliveries: 5, maxDeliveries: 5, error: "boom", stopping, retryMaxDelayMs: 1 }),
      { action: "dead_letter", reason: "boom" },
    );
  }
});

Deno.test("onFailure() leaves the entry pending while stopping below the limit", () => {
  assertEquals(
    onFailure({ deliveries: 1, maxDeliveries: 5, error: "x", stopping: true, retryMaxDelayMs: 1 }),
    { action: "leave" },
  );
});

Deno.test("overDeliveryLimit() names the limit only past it", () => {
  assertEquals(overDeliveryLimit(5, 5), undefined);
  assertEquals(
    overDeliveryLimit(6, 5),
    "delivered 6 times without success (MAX_DELIVERIES 5)",
  );
});

Deno.test("deadLetterFields() lists the dead-letter fields in order, the error bounded", () => {
  const fields = deadLetterFields({
    error: "x".repeat(MAX_DEAD_LETTER_ERROR + 10),
    sourceStream: "s",
    sourceId: "1-0",
    deliveries: 3,
    consumer: "c1",
    failedAt: "2026-01-01T00:00:00.000Z",
  });
  assertEquals(fields.filter((_, i) => i % 2 === 0), [...DEAD_LETTER_FIELDS]);
  assertEquals(fields[1].length, MAX_DEAD_LETTER_ERROR);
  assertEquals(fields.slice(2), [
    "sourceStream",
    "s",
    "sourceId",
    "1-0",
    "deliveries",
    "3",
    "consumer",
    "c1",
    "failedAt",
    "2026-01-01T00:00:00.000Z",
  ]);
});

Deno.test("schedule() derives every interval from CLAIM_IDLE_MS and the retention", () => {
  assertEquals(schedule({ claimIdleMs: 60_000, retentionMs: 86_400_000 }), {
    keepAliveMs: 15_000,
    claimIdleEveryMs: 5000,
    reaperEveryMs: 60_000,
    deadConsumerIdleMs: 600_000,
    trimEveryMs: 60_000,
    statsEveryMs: 2000,
    retryMaxDelayMs: 30_000,
  });
  const quick = schedule({ claimIdleMs: 40, retentionMs: 0, statsIntervalMs: 100 });
  assertEquals(quick.keepAliveMs, 20);
  assertEquals(quick.claimIdleEveryMs, 20);
  assertEquals(quick.reaperEveryMs, 1000);
  assertEquals(quick.trimEveryMs, undefined);
  assertEquals(quick.statsEveryMs, 100);
  assertEquals(quick.retryMaxDelayMs, 100);
});

Deno.test("schedule() keeps the keep-alive well inside the claim threshold", () => {
  for (const claimIdleMs of [100, 1000, 5000, 60_000, 3_600_000]) {
    const s = schedule({ claimIdleMs, retentionMs: 0 });
    assert(s.keepAliveMs * 2 <= claimIdleMs, `keep-alive ${s.keepAliveMs} for ${claimIdleMs}`);
  }
});

Deno.test("StatsBoard treats the first reading as a baseline and later growth as growth", () => {
  let now = 1000;
  const board = new StatsBoard(["s"], "g", (s) => `${s}:dlq`, () => now);
  const figures = {
    exists: true,
    pending: 1,
    lag: 2,
    consumers: 1,
    lastDeliveredId: "1-0",
    length: 5,
    dlqLength: 3,
  };
  assertEquals(board.update("s", figures).dlqGrewAt, undefined);
  now = 2000;
  assertEquals(board.update("s", { ...figures, dlqLength: 4 }).dlqGrewAt, 2000);
  now = 3000;
  board.deadLettered("s");
  const [snap] = board.snapshot();
  assertEquals(snap.dlqGrewAt, 3000);
  assertEquals(snap.dlqStream, "s:dlq");
  assertEquals(snap.pending, 1);
  snap.pending = 99; // a copy
  assertEquals(board.snapshot()[0].pending, 1);
});

Deno.test("entryRecord() builds the wire format's six fields at once, anything else by pairs", () => {
  const wire = ["event", "e", "aggregateId", "a", "timestamp", "t", "payload", "{}"];
  const six = [...wire, "serviceName", "s", "headers", "{}"];
  assertEquals(entryRecord(six), {
    event: "e",
    aggregateId: "a",
    timestamp: "t",
    payload: "{}",
    serviceName: "s",
    headers: "{}",
  });
  // Another order, a field less, a repeated name (the last value wins): the same record rules.
  assertEquals(entryRecord(["payload", "{}", "event", "e"]), { payload: "{}", event: "e" });
  assertEquals(entryRecord(["event", "e", "event", "f"]), { event: "f" });
  assertEquals(entryRecord([...six.slice(0, 10), "mimeType", "m"]).mimeType, "m");
  assertEquals(
    Object.keys(entryRecord([...six.slice(2), "event", "e"])),
    ["aggregateId", "timestamp", "payload", "serviceName", "headers", "event"],
  );
});

Deno.test("InFlight holds an entry once, counts room and wakes waiters on release", async () => {
  const sizes: number[] = [];
  const f = new InFlight({ streams: ["a", "b"], capacity: 2, onSize: (n) => sizes.push(n) });
  const h = f.hold("a", "1-0", 1)!;
  assertEquals([h.stream, h.id, h.deliveries, h.phase], ["a", "1-0", 1, "queued"]);
  assertEquals(f.hold("a", "1-0", 1), undefined, "held already");
  assert(f.hold("b", "1-0", 1), "same id in another stream is apart");
  assertEquals(f.room, 0);
  const freed = f.roomFreed();
  assert(f.release(h));
  assert(!f.release(h), "released twice");
  await freed;
  assertEquals(f.room, 1);
  f.admitted();
  assertEquals(sizes, [1]);
});

Deno.test("InFlight keys entries by id alone when one stream is consumed", () => {
  assertEquals(new InFlight({ streams: ["s"], capacity: 1 }).keyOf("s", "1-0"), "1-0");
  assertEquals(new InFlight({ streams: ["s", "t"], capacity: 1 }).keyOf("s", "1-0"), "s\u00001-0");
});

Deno.test("InFlight reuses freed slots, lists what it holds and keeps it across index copies", () => {
  const f = new InFlight({ streams: ["s"], capacity: 100 });
  const first = f.hold("s", "1-0", 1)!;
  const second = f.hold("s", "2-0", 1)!;
  assert(f.release(first));
  const third = f.hold("s", "3-0", 1)!;
  assert(!f.holds(first), "a released entry is not held, though its slot is reused");
  assert(f.holds(third) && f.holds(second));
  assert(!f.release(first), "releasing a stale entry leaves the slot's new one alone");
  assert(f.has("s", "3-0") && !f.has("s", "1-0"));
  // Held again under the same key: the old object is not the one held.
  assert(f.release(second));
  const again = f.hold("s", "2-0", 2)!;
  assert(f.holds(again) && !f.holds(second));
  // Releasing while iterating (what stop() does with entries waiting for a retry).
  for (const h of f.values()) f.release(h);
  assertEquals(f.size, 0);
  assertEquals([...f.values()], []);
  // Far more holds than the index copy period (16,384): nothing lost or duplicated.
  const live = new Map<string, ReturnType<InFlight["hold"]>>();
  for (let i = 0; i < 40_000; i++) {
    const id = `${i}-0`;
    live.set(id, f.hold("s", id, 1));
    if (live.size > 50) {
      const [oldest, h] = live.entries().next().value!;
      assert(f.release(h!), `release ${oldest}`);
      live.delete(oldest);
    }
  }
  assertEquals(f.size, live.size);
  assertEquals(new Set([...f.values()].map((h) => h.id)), new Set(live.keys()));
  for (const id of live.keys()) assert(f.has("s", id) && f.hold("s", id, 1) === undefined);
});

Deno.test("idNumber() is exact for plain ids that fit, -1 for anything else", () => {
  assertEquals(idNumber("0-0"), 0);
  assertEquals(idNumber("1-0"), 2048);
  assertEquals(idNumber("1700000000000-2047"), 1700000000000 * 2048 + 2047);
  assertEquals(idNumber(`${2 ** 42 - 1}-2047`), 2 ** 53 - 1);
  for (
    const bad of [
      "1-2048",
      `${2 ** 42}-0`,
      "01-0",
      "1-01",
      "1",
      "1-",
      "-1",
      "",
      "a-1",
      "1-a",
      "1-0-0",
    ]
  ) {
    assertEquals(idNumber(bad), -1, bad);
  }
});

Deno.test("InFlight holds ids that do not fit a number as strings, apart from those that do", () => {
  const f = new InFlight({ streams: ["s", "t"], capacity: 10 });
  const big = f.hold("s", "5-3000", 1)!;
  const plain = f.hold("s", "5-3", 1)!;
  assertEquals(f.hold("s", "5-3000", 1), undefined, "held already");
  assertEquals(f.hold("s", "5-3", 1), undefined, "held already");
  assert(f.has("s", "5-3000") && f.has("s", "5-3") && !f.has("t", "5-3") && !f.has("s", "5-30"));
  assertEquals(f.size, 2);
  assert(f.release(big));
  assert(!f.has("s", "5-3000") && f.has("s", "5-3"));
  assert(f.release(plain) && !f.release(plain));
  assert(!f.has("s", "5-3"));
  assert(f.hold("s", "5-3", 1), "held again once released");
  assert(f.hold("t", "5-3", 1), "same id in another stream is apart");
  assertEquals(f.size, 2);
});

Deno.test("KeySchema derives every key from the stream and the group", () => {
  const keys = new KeySchema({ group: "g", serviceName: "svc" });
  assertEquals(keys.dlq("orders"), "orders:dlq");
  assertEquals(keys.checkpoint("orders"), "orders:checkpoint:g");
  assertEquals(keys.dedup("orders", "k1"), "orders:dedup:g:k1");
  assertEquals(keys.publishIdempotency("orders", "k1"), "svc:idempotency:k1");
  assertEquals(keys.publishIdempotency("{orders:3}", "k1"), "{orders:3}:idempotency:svc:k1");
  assert(sameSlot(keys.publishIdempotency("{orders:3}", "k1"), "{orders:3}"));
  assertEquals(new KeySchema({ group: "g", dlqStream: "dead" }).dlq("orders"), "dead");
  assertThrows(() => new KeySchema({ group: "" }), TypeError);
});

Deno.test("OutcomeCounter.label() names known types, and counts the long and the rest as other", () => {
  const counter = new OutcomeCounter();
  assertEquals(counter.label("order.created"), "order.created");
  assertEquals(counter.label("x".repeat(101)), "other", "too long");
  for (let i = 0; i < MAX_EVENT_LABELS; i++) counter.label(`e${i}`);
  assertEquals(counter.label("one.more"), "other", "past the limit");
  assertEquals(counter.label("order.created"), "order.created", "known before the limit");
  // Asked again in a row and in turns: the same answers.
  for (const e of ["order.created", "order.created", "one.more", "one.more", "e0"]) {
    assertEquals(counter.label(e), e === "one.more" ? "other" : e, e);
  }
});
