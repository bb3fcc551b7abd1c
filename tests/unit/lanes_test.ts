/**
 * LaneScheduler: order within a lane, the concurrency bound across lanes,
 * synchronous completion without promises, and failures not blocking a lane.
 */
import { assert, assertEquals, assertThrows } from "../support/assert.ts";
import { LaneScheduler } from "../../src/stream/lanes.ts";

interface Item {
  lane: string;
  n: number;
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets the event loop turn until every lane finished; fails instead of hanging. */
async function drained<T>(lanes: LaneScheduler<T>): Promise<void> {
  for (let turn = 0; turn < 1000 && lanes.lanes > 0; turn++) {
    await new Promise((r) => setTimeout(r, 0));
  }
  assertEquals(lanes.lanes, 0, "all lanes finished");
}

Deno.test("LaneScheduler runs a lane's items one after another in push order", async () => {
  const started: string[] = [];
  const gates = new Map<string, ReturnType<typeof deferred>>();
  const lanes = new LaneScheduler<Item>({
    concurrency: 4,
    start: (item) => {
      started.push(`${item.lane}${item.n}`);
      const g = deferred();
      gates.set(`${item.lane}${item.n}`, g);
      return g.promise;
    },
  });
  lanes.push("a", { lane: "a", n: 1 });
  lanes.push("a", { lane: "a", n: 2 });
  lanes.push("b", { lane: "b", n: 1 });
  assertEquals(started, ["a1", "b1"], "a2 waits for a1; b runs beside a");
  gates.get("a1")!.resolve();
  await gates.get("a1")!.promise;
  await Promise.resolve();
  assertEquals(started, ["a1", "b1", "a2"]);
  gates.get("a2")!.resolve();
  gates.get("b1")!.resolve();
  await Promise.all([gates.get("a2")!.promise, gates.get("b1")!.promise]);
  await Promise.resolve();
  assertEquals(lanes.lanes, 0, "finished lanes are forgotten");
});

Deno.test("LaneScheduler never runs more than concurrency items at once", async () => {
  let running = 0;
  let peak = 0;
  const lanes = new LaneScheduler<number>({
    concurrency: 3,
    start: async () => {
      running++;
      peak = Math.max(peak, running);
      await Promise.resolve();
      await Promise.resolve();
      running--;
    },
  });
  for (let i = 0; i < 50; i++) lanes.push(`lane-${i % 10}`, i);
  await drained(lanes);
  assertEquals(peak, 3);
  assertEquals(lanes.running, 0);
});

Deno.test("LaneScheduler finishes synchronous items at once, in order, round-robin", () => {
  const order: string[] = [];
  const lanes = new LaneScheduler<string>({
    concurrency: 1,
    start: (item) => {
      order.push(item);
      return undefined;
    },
  });
  lanes.push("x", "x1");
  lanes.push("y", "y1");
  lanes.push("x", "x2");
  assertEquals(order, ["x1", "y1", "x2"], "everything ran before push returned");
  assertEquals(lanes.running, 0);
  assertEquals(lanes.lanes, 0);
});

Deno.test("LaneScheduler moves on after an item rejects or throws", async () => {
  const seen: number[] = [];
  const lanes = new LaneScheduler<number>({
    concurrency: 1,
    start: (n) => {
      seen.push(n);
      if (n === 1) return Promise.reject(new Error("boom"));
      if (n === 2) throw new Error("sync boom");
      return undefined;
    },
  });
  lanes.push("a", 1);
  lanes.push("a", 2);
  lanes.push("a", 3);
  await drained(lanes);
  assertEquals(seen, [1, 2, 3]);
});

Deno.test("new LaneScheduler() rejects a concurrency below 1", () => {
  assertThrows(() => new LaneScheduler({ concurrency: 0, start: () => undefined }), RangeError);
  assert(new LaneScheduler({ concurrency: 1, start: () => undefined }).running === 0);
});

Deno.test("LaneScheduler keeps order for items pushed from inside a start", async () => {
  const order: string[] = [];
  const gates = new Map<string, ReturnType<typeof deferred>>();
  const lanes: LaneScheduler<Item> = new LaneScheduler<Item>({
    concurrency: 2,
    start: (item) => {
      order.push(`${item.lane}${item.n}`);
      if (item.lane === "a" && item.n === 1) {
        // Same lane and another lane, pushed while a1 starts.
        lanes.push("a", { lane: "a", n: 2 });
        lanes.push("b", { lane: "b", n: 1 });
        const g = deferred();
        gates.set("a1", g);
        return g.promise;
      }
      return undefined;
    },
  });
  lanes.push("a", { lane: "a", n: 1 });
  assertEquals(order, ["a1", "b1"], "b1 starts beside a1; a2 waits for a1");
  lanes.push("a", { lane: "a", n: 3 });
  gates.get("a1")!.resolve();
  await drained(lanes);
  assertEquals(order, ["a1", "b1", "a2", "a3"]);
});

Deno.test("LaneScheduler runs an item pushed to its own lane from a synchronous start next", () => {
  const order: string[] = [];
  const lanes: LaneScheduler<Item> = new LaneScheduler<Item>({
    concurrency: 1,
    start: (item) => {
      order.push(`${item.lane}${item.n}`);
      if (item.n === 1) lanes.push(item.lane, { lane: item.lane, n: 2 });
      return undefined;
    },
  });
  lanes.push("a", { lane: "a", n: 1 });
  assertEquals(order, ["a1", "a2"]);
  assertEquals(lanes.lanes, 0);
  assertEquals(lanes.running, 0);
});
