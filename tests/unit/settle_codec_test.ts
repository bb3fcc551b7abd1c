/**
 * The settle script's argument encoding and its reply (`settle_codec.ts`, `settle_reply.ts`), pure: bare
 * acknowledgements joined per group, the highest id first; copies, marks and emitted entries
 * after them with each key once by index; forwards with their bytes as `#`, where their bytes
 * lie packed in one integer; the reply mapped back per group and per op. No Redis.
 *
 * @module
 */
import { assert, assertEquals, assertThrows } from "../support/assert.ts";
import {
  encodeSettle,
  ForwardCopies,
  ForwardCopy,
  newerId,
  packRawSpan,
  rawAppends,
  rawCopyCount,
  rawFieldCount,
  rawStart,
} from "../../src/stream/consumer/settle_codec.ts";
import { RawChunks } from "../../src/redis/raw_chunks.ts";
import { decodeSettle } from "../../src/stream/consumer/settle_reply.ts";

const batch = {
  stream: "s",
  checkpointKey: "s:checkpoint:g",
  group: "g",
  consumer: "c1",
  now: "2026-01-01T00:00:00.000Z",
  dedupTtlS: 60,
};

Deno.test("encodeSettle() joins bare acknowledgements into one argument, the highest id first", () => {
  const ops = [{ id: "1-0" }, { id: "3-0" }, { id: "2-0" }];
  const { keys, args, groups, order } = encodeSettle(batch, ops);
  assertEquals(keys, ["s", "s:checkpoint:g"]);
  // Then no other ops: an empty id range and no group of plain forwards.
  assertEquals(args, ["g", "c1", batch.now, "60", "1000", "1", "3-0,1-0,2-0", "", "", "0"]);
  assertEquals(groups, [ops]);
  assertEquals(order, []);
});

Deno.test("encodeSettle() groups bare acknowledgements by the caller's key", () => {
  const ops = [
    { id: "1-0", k: "a" },
    { id: "2-0", k: "b" },
    { id: "10-0", k: "a" },
    { id: "9-5", k: "a" },
  ];
  const { args, groups } = encodeSettle(batch, ops, (a, b) => a.k === b.k);
  assertEquals(args.slice(5), ["2", "10-0,1-0,9-5", "2-0", "", "", "0"]);
  assertEquals(groups, [[ops[0], ops[2], ops[3]], [ops[1]]]);
});

Deno.test("newerId() orders stream ids by milliseconds, then sequence", () => {
  assert(newerId("10-0", "9-0"));
  assert(!newerId("9-0", "10-0"));
  assert(newerId("5-10", "5-9"));
  assert(!newerId("5-9", "5-10"));
  assert(newerId("1700000000001-0", "1700000000000-99"));
  assert(!newerId("7-3", "7-3"));
});

Deno.test("encodeSettle() puts copies and marks after the bare acks, keys once each by index", () => {
  const plain = { id: "3-0" };
  const routed = {
    id: "1-0",
    copy: { kind: "forward" as const, targets: ["out", "audit"], headers: "{}" },
  };
  const routedToo = {
    id: "10-0",
    copy: { kind: "forward" as const, targets: ["out", "audit"], headers: '{"n":"2"}' },
  };
  const routedElsewhere = {
    id: "0-9",
    copy: { kind: "forward" as const, targets: ["audit"], headers: "{}" },
  };
  const routedBare = { id: "7-0", copy: new ForwardCopy(["out", "audit"]) };
  const keyed = {
    id: "2-0",
    dedupKey: "s:dedup:g:k",
    copy: { kind: "forward" as const, targets: ["out"], headers: '{"a":"b"}' },
  };
  const dead = {
    id: "4-0",
    copy: { kind: "dead_letter" as const, target: "s:dlq", fields: ["error", "x"] },
  };
  const marked = { id: "5-0", dedupKey: "s:dedup:g:k2" };
  const { keys, args, order } = encodeSettle(batch, [
    routed,
    plain,
    keyed,
    routedToo,
    dead,
    routedElsewhere,
    routedBare,
    marked,
  ]);
  assertEquals(keys, [
    "s",
    "s:checkpoint:g",
    "out",
    "audit",
    "s:dedup:g:k",
    "s:dlq",
    "s:dedup:g:k2",
  ]);
  assertEquals(args.slice(5), [
    "1",
    "3-0",
    // the range of the other ops' ids
    "0-9",
    "10-0",
    // two groups of plain forwards: to KEYS 3 and 4 (the text that extends own headers; per id
    // "=" for given headers, "+" for headers the script makes; their number; the field count of
    // "#" entries, none here; the ids; the given headers), to KEYS 4 (all given: one "=")
    "2",
    ..."2 3 4".split(" "),
    '"sourceStream":"s","sourceId":"',
    ..."==+ 3 0 1-0,10-0,7-0".split(" "),
    "{}",
    '{"n":"2"}',
    ..."1 4".split(" "),
    '"sourceStream":"s","sourceId":"',
    ..."= 1 0 0-9".split(" "),
    "{}",
    // keyed: id, kind, mark KEYS[5], 1 target (KEYS 3), the headers; no emits
    ..."2-0 f 5 1 3 1".split(" "),
    '{"a":"b"}',
    "0",
    // dead: id, kind, no mark, 1 target (KEYS 6), 2 extras: the dead-letter fields; no emits
    ..."4-0 d 0 1 6 2 error x 0".split(" "),
    // marked: id, kind m, mark KEYS[7], no target, no extra, no emits
    ..."5-0 m 7 0 0 0".split(" "),
  ]);
  assertEquals(order, [routed, routedToo, routedBare, routedElsewhere, keyed, dead, marked]);
});

Deno.test("encodeSettle() refuses a forward without headers that has a mark or emits", () => {
  const keyed = { id: "2-0", dedupKey: "k", copy: new ForwardCopy(["out"]) };
  assertThrows(() => encodeSettle(batch, [keyed]), TypeError, "no headers");
});

Deno.test("encodeSettle() of no bare acknowledgements sends no group", () => {
  const { args } = encodeSettle(batch, [{ id: "1-0", dedupKey: "m" }]);
  assertEquals(args.slice(5), ["0", "1-0", "1-0", "0", "1-0", "m", "3", "0", "0", "0"]);
});

Deno.test("encodeSettle() writes each emitted entry once per target", () => {
  const op = {
    id: "1-0",
    emits: [
      { targets: ["a", "b"], fields: ["event", "x"] },
      { targets: ["a"], fields: ["event", "y", "k", "v"] },
    ],
  };
  const { keys, args } = encodeSettle(batch, [op]);
  assertEquals(keys, ["s", "s:checkpoint:g", "a", "b"]);
  assertEquals(args.slice(5), [
    ..."0 1-0 1-0 0".split(" "),
    ..."1-0 m 0 0 0".split(" "),
    // three writes: KEYS[3] and KEYS[4] get x, KEYS[3] gets y
    ..."3 3 2 event x 4 2 event x 3 4 event y k v".split(" "),
  ]);
});

Deno.test("decodeSettle() maps the group counts, each result and the checkpoint flag", () => {
  assertEquals(decodeSettle([3, 0, 1, 0, 2, "target_type", 1], 2, 4), {
    acked: [3, 0],
    results: ["settled", "not_ours", "gone", { failed: "target_type" }],
    checkpointWritten: true,
    fenced: false,
  });
  assertEquals(decodeSettle([1, 0], 0, 1).checkpointWritten, false);
});

Deno.test("decodeSettle() rejects a reply of the wrong length or an unknown result", () => {
  assertThrows(() => decodeSettle([1], 0, 1), TypeError, "1 results for 0 groups and 1 entries");
  assertThrows(() => decodeSettle(null, 0, 1), TypeError);
  assertThrows(() => decodeSettle(["surprise", 1], 0, 1), TypeError, "surprise");
  assertThrows(() => decodeSettle([-1, 1], 1, 0), TypeError, "for a group");
});

Deno.test("ForwardCopies: one copy without headers per list of targets, a new one with headers", () => {
  const copies = new ForwardCopies();
  const out = ["out"];
  const audit = ["audit"];
  const bare = copies.to(out);
  assert(copies.to(out) === bare, "the same targets share one copy");
  assertEquals(bare.headers, undefined);
  const other = copies.to(audit);
  assert(other !== bare && other.targets === audit, "other targets: another copy");
  const given = copies.to(out, '{"a":"b"}');
  assert(given !== bare && given.headers === '{"a":"b"}', "with headers: a copy of its own");
});

Deno.test("packRawSpan() packs a start below 2^19, a field count below 2048 and the append flag into one small integer", () => {
  for (
    const [start, fields, append] of [
      [0, 0, false],
      [2 ** 19 - 1, 2047, true],
      [12345, 12, false],
      [7, 2000, true],
    ] as const
  ) {
    const span = packRawSpan(start, fields, append);
    assert(span <= 2 ** 31 - 1, "a small integer");
    assertEquals([rawStart(span), rawFieldCount(span), rawAppends(span)], [start, fields, append]);
    assertEquals(rawCopyCount(span), fields + (append ? 2 : 0));
  }
});

Deno.test("encodeSettle() with bytes: plain forwards with their bytes go as '#', ids and fields given, one field count per group", () => {
  const chunk = new RawChunks(64).copy(new Uint8Array(8), 0, 8)![0];
  const raw = (id: string, fields: number, append = false) => ({
    id,
    copy: new ForwardCopy(["out"]),
    rawChunk: chunk,
    rawSpan: packRawSpan(0, fields, append),
  });
  const made = { id: "3-0", copy: new ForwardCopy(["out"]) };
  // All "#": one mode, no ids text, the ids among the given arguments (their fields follow).
  const all = encodeSettle({ ...batch, bytes: true }, [raw("1-0", 12), raw("2-0", 10, true)]);
  assertEquals(all.args.slice(5), [
    ..."0 1-0 2-0 1 1 3".split(" "),
    '"sourceStream":"s","sourceId":"',
    ..."# 2 12".split(" "),
    "",
    "1-0",
    "2-0",
  ]);
  assertEquals(all.rawAt, [all.args.length - 2, all.args.length - 1]);
  assertEquals(all.raws.map((op) => op.id), ["1-0", "2-0"]);
  // Mixed: a field count other than the group's, or no bytes: "+"; without bytes: no "#".
  const mixed = encodeSettle({ ...batch, bytes: true }, [raw("1-0", 12), raw("2-0", 8), made]);
  assertEquals(mixed.args.slice(12), ["#++", "3", "12", "1-0,2-0,3-0", "1-0"]);
  assertEquals(mixed.raws.map((op) => op.id), ["1-0"]);
  const plain = encodeSettle(batch, [raw("1-0", 12)]);
  assertEquals(plain.args.slice(12), ["+", "1", "0", "1-0"]);
  assertEquals(plain.raws, []);
});
