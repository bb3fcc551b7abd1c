/**
 * Integration tests of the settle script (`SETTLE`) run directly, as the service runs it (through
 * a consumer's connection), on entries pending for a made-up consumer: bare acknowledgements in
 * bulk with exact counts and checkpoint, forwarded copies checked and copied in batches (one by one
 * past a cut), forwards given out of id order with pending entries between them, copies whose
 * headers the script makes from the entry's own, runs of forwards taken straight from the rows
 * (an entry deleted among them, headers given or made), and forwards beside a dead letter and a
 * mark in one batch.
 *
 * @module
 */

import { assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { type RedisClient, startRedis } from "../support/redis_server.ts";
import {
  createGroup,
  pendingCount,
  readAsGhost,
  readStream,
  wireEntry,
  xadd,
} from "../support/streams.ts";
import { startConsumer } from "../support/in_process_consumer.ts";
import {
  encodeSettle,
  ForwardCopy,
  type SettleOpInput,
} from "../../src/stream/consumer/settle_codec.ts";
import { forwardHeaders, MAX_ENTRY_FIELDS, type StreamEvent } from "../../src/stream/entry.ts";
import { SETTLE } from "../../src/stream/consumer/settle_script.ts";
/**
 * For the SETTLE tests: a consumer (only its connection is used, to run the script as the
 * service does) and `n` entries of stream `t` (field `n` their index) pending for "manual" in
 * group "g". `settle` runs SETTLE for ops of those, as "manual" (ops counted alike by `alike`).
 */
async function pendingForManual(cleanup: Cleanup, event: string, n: number) {
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const { connection } = await startConsumer(cleanup, redis, { STREAM: "other" });
  await createGroup(client, "t", "g");
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    ids.push(await xadd(client, "t", { ...wireEntry(event, `a${i}`), n: String(i) }));
  }
  await readAsGhost(client, "t", "g", "manual", n);
  const settle = async <T extends SettleOpInput>(
    ops: readonly T[],
    alike?: (a: T, b: T) => boolean,
    checkpointKey = "t:checkpoint:g",
  ) => {
    const { keys, args } = encodeSettle(
      {
        stream: "t",
        checkpointKey,
        group: "g",
        consumer: "manual",
        now: new Date().toISOString(),
        dedupTtlS: 60,
      },
      ops,
      alike,
    );
    return await connection.exec((c) => SETTLE.run(c, keys, args));
  };
  return { redis, client, ids, settle };
}

/** A forward of entry `id` to `out`, with headers naming it. */
function forwardToOut(id: string) {
  return { id, copy: { kind: "forward" as const, targets: ["out"], headers: `{"from":"${id}"}` } };
}

/** XADDs entries given as flat field lists to `t`, read by "manual" (pending); their ids. */
async function addPending(client: RedisClient, flats: readonly string[][]): Promise<string[]> {
  const ids: string[] = [];
  for (const flat of flats) ids.push(String(await client.sendCommand(["XADD", "t", "*", ...flat])));
  await readAsGhost(client, "t", "g", "manual", flats.length);
  return ids;
}

/** The headers `forwardHeaders` makes for entry `id` of `t` from the last headers field of `flat`. */
function madeHeaders(flat: readonly string[], id: string): string {
  const last = flat.lastIndexOf("headers");
  const own = last < 0 ? {} : JSON.parse(flat[last + 1]);
  return forwardHeaders({ stream: "t", id, headers: own } as StreamEvent);
}

/** The fields of every entry of `stream`, in order. */
async function copies(client: RedisClient, stream: string): Promise<string[][]> {
  const rows = await client.sendCommand(["XRANGE", stream, "-", "+"]) as [string, string[]][];
  return rows.map(([, fields]) => fields);
}

Deno.test("SETTLE acknowledges bare entries in bulk with exact counts and checkpoint", async () => {
  await using cleanup = new Cleanup();
  const { client, ids, settle: run } = await pendingForManual(cleanup, "bulk.ack", 6);
  const settle = (group: string[][], checkpointKey?: string) =>
    run(
      group.flatMap((g, k) => g.map((id) => ({ id, k: String(k) }))),
      (a, b) => a.k === b.k,
      checkpointKey,
    );
  // Acknowledged elsewhere already: the highest of the next group, and one in the middle.
  await client.sendCommand(["XACK", "t", "g", ids[3], ids[1]]);
  assertEquals(await settle([[ids[0], ids[1]], [ids[2], ids[3]]]), [1, 1, 1]);
  // The highest id acknowledged by this call is ids[2] (ids[3] was acknowledged elsewhere).
  assertEquals(await client.hGet("t:checkpoint:g", "manual"), ids[2]);
  assertEquals(await settle([[ids[5], ids[4], ids[0]]]), [2, 1]);
  assertEquals(await client.hGet("t:checkpoint:g", "manual"), ids[5]);
  assertEquals(await pendingCount(client, "t", "g"), 0);
  // Nothing acknowledged: the checkpoint stays where it was.
  assertEquals(await settle([[ids[2]]]), [0, 1]);
  assertEquals(await client.hGet("t:checkpoint:g", "manual"), ids[5]);
  // A checkpoint key of another type: acknowledged all the same, checkpoint reported unwritten.
  const more = await xadd(client, "t", wireEntry("bulk.ack", "b"));
  await readAsGhost(client, "t", "g", "manual", 1);
  await client.set("wrong:checkpoint", "x");
  assertEquals(await settle([[more]], "wrong:checkpoint"), [1, 0]);
  assertEquals(await client.get("wrong:checkpoint"), "x");
  assertEquals(await pendingCount(client, "t", "g"), 0);
});

Deno.test("SETTLE checks and copies forwarded entries in batches, one by one past a cut", async () => {
  await using cleanup = new Cleanup();
  // 80 entries pending for "manual": more than the batched XPENDING and XRANGE of 2 ops
  // take (2 * 2 + 64), so the last op is checked and copied one by one.
  const { client, ids, settle } = await pendingForManual(cleanup, "fwd.batch", 80);
  // One more, pending for another consumer (claimed away): its XACK takes effect, so it is
  // copied here, once (spec section 5: "XACK returns 1"); that consumer's settle then finds it
  // acknowledged. And one acknowledged elsewhere already: not pending, nothing written for it.
  const theirs = await xadd(client, "t", wireEntry("fwd.batch", "z"));
  await readAsGhost(client, "t", "g", "other", 1);
  await client.sendCommand(["XACK", "t", "g", ids[20]]);
  assertEquals(
    await settle([
      forwardToOut(ids[0]),
      forwardToOut(ids[20]),
      forwardToOut(ids[79]),
      forwardToOut(theirs),
      { id: ids[40] },
    ]),
    [1, 1, 0, 1, 1, 1],
  );
  const out = await readStream(client, "out");
  assertEquals(out.map((e) => e.fields.n), ["0", "79", undefined]);
  assertEquals(
    out.map((e) => e.fields.headers),
    [ids[0], ids[79], theirs].map((id) => `{"from":"${id}"}`),
  );
  assertEquals(out[1].fields.payload, wireEntry("fwd.batch", "a79").payload);
  assertEquals(out[2].fields.payload, wireEntry("fwd.batch", "z").payload);
  assertEquals(await pendingCount(client, "t", "g"), 80 - 4);
  assertEquals(await client.hGet("t:checkpoint:g", "manual"), theirs);
  // Settled again (a retry after a lost reply): nothing pending, nothing copied twice.
  assertEquals(await settle([forwardToOut(ids[0]), forwardToOut(theirs)]), [0, 0, 1]);
  assertEquals((await readStream(client, "out")).length, 3);
});

Deno.test("SETTLE copies forwarded entries given out of id order, with entries between them", async () => {
  await using cleanup = new Cleanup();
  const { client, ids, settle } = await pendingForManual(cleanup, "fwd.order", 6);
  // Not in id order, and ids[1] and ids[3] (pending, not settled here) lie between them.
  const order = [4, 0, 5, 2];
  assertEquals(await settle(order.map((i) => forwardToOut(ids[i]))), [1, 1, 1, 1, 1]);
  const out = await readStream(client, "out");
  assertEquals(out.map((e) => e.fields.n), order.map(String));
  assertEquals(out.map((e) => e.fields.headers), order.map((i) => `{"from":"${ids[i]}"}`));
  assertEquals(await pendingCount(client, "t", "g"), 2);
  assertEquals(await client.hGet("t:checkpoint:g", "manual"), ids[5]);
});

Deno.test("SETTLE extends each entry's own headers when the process sends none, as forwardHeaders does", async () => {
  await using cleanup = new Cleanup();
  const { client, settle } = await pendingForManual(cleanup, "unused", 0);
  const head = ["event", "fwd.own", "aggregateId", "a", "payload", "{}"];
  // Each as Redis will hold it: its headers fields (none, one, or two: the last one counts).
  const entries = [
    [...head, "headers", "{}"],
    [...head, "headers", '{"correlationId":"c-1","traceparent":"00-abc"}'],
    [...head],
    [...head, "headers", '{"first":"x"}', "n", "1", "headers", '{"k":"v"}'],
    [...head, "headers", '{"name":"zoë ✓ 😀"}', "after", "kept"],
  ];
  const ids = await addPending(client, entries);
  const ops = ids.map((id) => ({ id, copy: new ForwardCopy(["out"]) }));
  assertEquals(await settle(ops), [...ids.map(() => 1), 1]);
  const out = await copies(client, "out");
  assertEquals(out.length, entries.length);
  entries.forEach((flat, i) => {
    const last = flat.lastIndexOf("headers");
    const expected = [...flat];
    if (last < 0) expected.push("headers", madeHeaders(flat, ids[i]));
    else expected[last + 1] = madeHeaders(flat, ids[i]);
    assertEquals(out[i], expected, `entry ${i}`);
  });
  assertEquals(await pendingCount(client, "t", "g"), 0);
});

Deno.test("SETTLE writes nothing for a forward over the field limit, in a run in line or not", async () => {
  await using cleanup = new Cleanup();
  const { client, settle } = await pendingForManual(cleanup, "unused", 0);
  const plain = (i: number) => Object.entries(wireEntry("fwd.wide", `a${i}`)).flat();
  // One field more than a copy may have (the script's unpack limit, MAX_ENTRY_FIELDS).
  const wide = [...plain(1), ...Array.from({ length: 2 * MAX_ENTRY_FIELDS }, (_, j) => `f${j}`)];
  const ids = await addPending(client, [plain(0), wide, plain(2), plain(3)]);
  const copy = new ForwardCopy(["out"]);
  // In line (the rows are exactly these ids): the usual path.
  assertEquals(
    await settle(ids.slice(0, 3).map((id) => ({ id, copy }))),
    [1, "too_many_fields", 1, 1],
  );
  // Not in line (ids[2] is settled, so the rows of [ids[1], ids[3]] hold an entry more).
  assertEquals(await settle([ids[1], ids[3]].map((id) => ({ id, copy }))), [
    "too_many_fields",
    1,
    1,
  ]);
  // Nothing written for it: no copy, still pending; the others copied once.
  const out = await copies(client, "out");
  assertEquals(out.length, 3);
  assertEquals(out.map((f) => f[f.indexOf("aggregateId") + 1]), ["a0", "a2", "a3"]);
  assertEquals(await pendingCount(client, "t", "g"), 1);
  assertEquals(await client.hGet("t:checkpoint:g", "manual"), ids[3]);
});

Deno.test("SETTLE copies a run of forwards to two targets, an entry deleted among them", async () => {
  await using cleanup = new Cleanup();
  const { client, settle } = await pendingForManual(cleanup, "unused", 0);
  // Their headers field last, as publishers write it.
  const entries = Array.from({ length: 6 }, (_, i) => {
    const { headers, ...rest } = wireEntry("fwd.run", `a${i}`);
    return Object.entries({ ...rest, n: String(i), headers }).flat();
  });
  const ids = await addPending(client, entries);
  // Deleted after it was read: acknowledged without a copy. The rows of the entries after it
  // no longer line up with their ids, and they are copied all the same.
  await client.sendCommand(["XDEL", "t", ids[2]]);
  const copy = new ForwardCopy(["out", "audit"]);
  assertEquals(await settle(ids.map((id) => ({ id, copy }))), [1, 1, 2, 1, 1, 1, 1]);
  const kept = [0, 1, 3, 4, 5];
  const expected = kept.map((i) => [...entries[i].slice(0, -1), madeHeaders(entries[i], ids[i])]);
  assertEquals(await copies(client, "out"), expected);
  assertEquals(await copies(client, "audit"), expected);
  assertEquals(await pendingCount(client, "t", "g"), 0);
  assertEquals(await client.hGet("t:checkpoint:g", "manual"), ids[5]);
});

Deno.test("SETTLE copies a run of forwards, some with headers given: replaced where the entry has them, appended where not", async () => {
  await using cleanup = new Cleanup();
  const { client, settle } = await pendingForManual(cleanup, "unused", 0);
  const head = ["event", "fwd.given", "aggregateId", "a", "payload", "{}"];
  const entries = [
    [...head, "headers", '{"correlationId":"c-0"}'],
    [...head, "headers", '{"correlationId":"c-1"}', "mimeType", "application/json"],
    [...head],
    [...head, "headers", '{"correlationId":"c-3"}'],
  ];
  const ids = await addPending(client, entries);
  // Given for entries 0 and 2 (as the process sends them when the entry's headers field is not
  // the JSON of its parse); made by the script for entries 1 and 3.
  const given = (i: number) => `{"given":"${i}"}`;
  const shared = new ForwardCopy(["out"]);
  const ops = ids.map((id, i) => ({
    id,
    copy: i % 2 === 0 ? new ForwardCopy(["out"], given(i)) : shared,
  }));
  assertEquals(await settle(ops), [1, 1, 1, 1, 1]);
  const made = (i: number) => madeHeaders(entries[i], ids[i]);
  assertEquals(await copies(client, "out"), [
    [...head, "headers", given(0)],
    [...head, "headers", made(1), "mimeType", "application/json"],
    [...head, "headers", given(2)],
    [...head, "headers", made(3)],
  ]);
  assertEquals(await pendingCount(client, "t", "g"), 0);
});

Deno.test("SETTLE settles plain forwards beside a dead letter and a mark in one batch", async () => {
  await using cleanup = new Cleanup();
  const { client, ids, settle } = await pendingForManual(cleanup, "fwd.mixed", 5);
  const copy = new ForwardCopy(["out"], '{"given":"1"}');
  const ops = [
    { id: ids[0], copy },
    { id: ids[1], copy: { kind: "dead_letter" as const, target: "t:dlq", fields: ["error", "x"] } },
    { id: ids[2], copy },
    { id: ids[3], dedupKey: "t:dedup:g:k" },
    { id: ids[4], copy },
  ];
  // The plain forwards first in the reply, then the dead letter, the mark and the checkpoint.
  assertEquals(await settle(ops), [1, 1, 1, 1, 1, 1]);
  const out = await readStream(client, "out");
  assertEquals(out.map((e) => e.fields.n), ["0", "2", "4"]);
  assertEquals(out.map((e) => e.fields.headers), [
    '{"given":"1"}',
    '{"given":"1"}',
    '{"given":"1"}',
  ]);
  const dlq = await readStream(client, "t:dlq");
  assertEquals(dlq.map((e) => [e.fields.n, e.fields.error]), [["1", "x"]]);
  assertEquals(await client.get("t:dedup:g:k"), ids[3]);
  assertEquals(await pendingCount(client, "t", "g"), 0);
  assertEquals(await client.hGet("t:checkpoint:g", "manual"), ids[4]);
});
