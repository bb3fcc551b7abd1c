/**
 * Unit tests of the chaos soak's pure parts: the accounting of `chaos/tally.ts` (so that the
 * soak's "nothing lost, nothing duplicated" can fail), the entry mix of `chaos/entries.ts` and
 * the seeded generator of `chaos/rng.ts`.
 */
import { chaosEntry, chooseKind, type EntryKind, seqOf } from "../../chaos/entries.ts";
import { Rng } from "../../chaos/rng.ts";
import { problems, type Produced, tally, type TallyInput, warnings } from "../../chaos/tally.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";
import { pairs, type StreamEntry } from "../support/streams.ts";

/** Source entry `seq` of `kind` with id `1-<seq>`. */
function source(seq: number, kind: EntryKind): StreamEntry {
  return { id: `1-${seq}`, fields: pairs(chaosEntry(seq, kind, "t")) };
}

/** A forwarded copy of source id `id`. */
function forwarded(id: string, n: number): StreamEntry {
  return { id: `2-${n}`, fields: { headers: JSON.stringify({ sourceId: id }) } };
}

/** A dead-letter copy of source id `id`. */
function deadLetter(id: string, n: number): StreamEntry {
  return { id: `3-${n}`, fields: { sourceId: id, error: "boom" } };
}

/** Three good entries (seq 0–2) and one poison (seq 3), all acknowledged. */
function input(overrides: Partial<TallyInput> = {}): TallyInput {
  const kinds: EntryKind[] = ["good", "good", "good", "bad-json"];
  const produced: Produced[] = kinds.map((kind, seq) => ({ seq, kind, id: `1-${seq}` }));
  return {
    produced,
    source: kinds.map((kind, seq) => source(seq, kind)),
    out: [0, 1, 2].map((i) => forwarded(`1-${i}`, i)),
    dlq: [deadLetter("1-3", 0)],
    pending: 0,
    lag: 0,
    ...overrides,
  };
}

Deno.test("tally() counts a clean run as passed", () => {
  const t = tally(input());
  assertEquals(
    [t.acknowledged, t.expected, t.expectedPoison, t.copies, t.distinct, t.duplicates, t.missing],
    [4, 4, 1, 3, 3, 0, 0],
  );
  assertEquals([t.deadLettered, t.poisonDeadLettered, t.poisonForwarded], [1, 1, 0]);
  assertEquals(problems(t), []);
  assertEquals(warnings(t), []);
});

Deno.test("tally() finds a missing entry and a duplicate copy", () => {
  const t = tally(input({ out: [forwarded("1-0", 0), forwarded("1-0", 1), forwarded("1-2", 2)] }));
  assertEquals([t.missing, t.missingIds, t.duplicates, t.duplicateIds], [1, ["1-1"], 1, ["1-0"]]);
  const found = problems(t);
  assertEquals(found.length, 2);
  assertEquals(t.missingByKind, { good: 1 });
  assert(found[0].includes("1 entries lost") && found[0].includes("good 1"), found[0]);
  assert(found[0].includes("1-1"), found[0]);
  assert(found[1].includes("1 duplicate copies") && found[1].includes("1-0"), found[1]);
});

Deno.test("tally() counts an entry both forwarded and dead-lettered as a duplicate", () => {
  const t = tally(input({ dlq: [deadLetter("1-3", 0), deadLetter("1-1", 1)] }));
  assertEquals([t.duplicates, t.goodDeadLettered, t.missing], [1, 1, 0]);
  assertEquals(problems(t).length, 1);
});

Deno.test("tally() fails poison that was forwarded, and warns of well-formed dead letters", () => {
  const poisonOut = tally(input({ out: [0, 1, 2, 3].map((i) => forwarded(`1-${i}`, i)), dlq: [] }));
  assertEquals([poisonOut.poisonForwarded, poisonOut.poisonForwardedIds], [1, ["1-3"]]);
  assert(problems(poisonOut).some((p) => p.includes("poison entries forwarded")));

  const goodDead = tally(input({
    out: [forwarded("1-0", 0), forwarded("1-1", 1)],
    dlq: [deadLetter("1-3", 0), deadLetter("1-2", 1)],
  }));
  assertEquals(problems(goodDead), []);
  assertEquals(warnings(goodDead).length, 1);
});

Deno.test("tally() expects unknown XADDs that landed, and ignores those that did not", () => {
  const base = input();
  const produced: Produced[] = [
    ...base.produced,
    { seq: 4, kind: "good" }, // no reply, but in the source stream
    { seq: 5, kind: "good" }, // no reply, not in the source stream
    { seq: 6, kind: "good", rejected: true },
  ];
  const landed = tally({ ...base, produced, source: [...base.source, source(4, "good")] });
  assertEquals([landed.unknown, landed.unknownLanded, landed.rejected], [2, 1, 1]);
  assertEquals([landed.expected, landed.missing, landed.missingIds], [5, 1, ["1-4"]]);
  const handled = tally({
    ...base,
    produced,
    source: [...base.source, source(4, "good")],
    out: [...base.out, forwarded("1-4", 9)],
  });
  assertEquals(problems(handled), []);
});

Deno.test("tally() reports acknowledged XADDs Redis lost, copies of strangers and a group not drained", () => {
  const base = input();
  const t = tally({
    ...base,
    source: base.source.slice(1),
    out: [...base.out, forwarded("9-9", 7), { id: "2-8", fields: { headers: "{" } }],
    pending: 2,
    lag: null,
  });
  // 1-0 is absent from the source stream, yet it was forwarded: not missing.
  assertEquals([t.ackedNotInSource, t.ackedNotInSourceIds, t.missing], [1, ["1-0"], 0]);
  assertEquals([t.strangers, t.unreadable], [1, 1]);
  const found = problems(t);
  assert(found.some((p) => p.includes("never produced")), found.join("\n"));
  assert(found.some((p) => p.includes("readable source id")), found.join("\n"));
  assert(found.some((p) => p.includes("pending 2, lag unknown")), found.join("\n"));

  const lost = tally({ ...base, source: base.source.slice(1), out: base.out.slice(1) });
  assertEquals([lost.ackedNotInSource, lost.missing], [1, 1]);
  assert(warnings(lost).some((w) => w.includes("lost by Redis")));
});

Deno.test("tally() counts entries still pending or unread as unsettled, not missing", () => {
  const base = input();
  const t = tally({
    ...base,
    out: [forwarded("1-0", 0)],
    dlq: [],
    pending: 1,
    lag: 2,
    pendingIds: new Set(["1-1"]),
    lastDeliveredId: "1-1",
  });
  assertEquals([t.missing, t.missingIds, t.unsettled], [0, [], 3]);
  assertEquals(problems(t), [
    "group not drained: pending 1, lag 2 (3 expected entries still pending or unread)",
  ]);
});

Deno.test("chaosEntry() builds each kind with its sequence number first", () => {
  const good = pairs(chaosEntry(7, "good", "r"));
  assertEquals(chaosEntry(7, "good", "r").slice(0, 2), ["chaosSeq", "7"]);
  assertEquals([good.event, good.payload, seqOf(good)], ["chaos.tick", '{"seq":7}', 7]);
  assertEquals(JSON.parse(good.headers), { correlationId: "r-7" });
  assertEquals(pairs(chaosEntry(1, "no-event", "r")).event, undefined);
  assertThrows(() => JSON.parse(pairs(chaosEntry(1, "bad-json", "r")).payload));
  assertEquals(pairs(chaosEntry(1, "always-fails", "r")).event, "diagnostic.fail");
  assertEquals(chaosEntry(1, "many-fields", "r").length / 2 > 1_000, true);
  assert(pairs(chaosEntry(1, "huge", "r")).payload.length > 1_000_000);
  assertEquals(seqOf({ chaosSeq: "x" }), undefined);
});

Deno.test("chooseKind() mixes poison at the given ratio, hostile kinds only when asked", () => {
  const rng = new Rng(1);
  const counts: Record<string, number> = {};
  for (let i = 0; i < 10_000; i++) {
    const kind = chooseKind(rng, 0.1, false);
    counts[kind] = (counts[kind] ?? 0) + 1;
  }
  assert(counts.good > 8_700 && counts.good < 9_300, JSON.stringify(counts));
  assertEquals(counts["many-fields"] ?? 0, 0);
  assertEquals(counts.huge ?? 0, 0);
  let hostile = 0;
  for (let i = 0; i < 10_000; i++) {
    if (["many-fields", "huge"].includes(chooseKind(rng, 1, true))) hostile++;
  }
  assert(hostile > 500 && hostile < 1_500, `${hostile} hostile of 10000`);
});

Deno.test("Rng replays the same sequence for the same seed", () => {
  const draw = (seed: number) => {
    const rng = new Rng(seed);
    return [rng.next(), rng.int(1, 6), rng.shuffle([1, 2, 3, 4]), rng.fork().next()];
  };
  assertEquals(draw(42), draw(42));
  assert(JSON.stringify(draw(42)) !== JSON.stringify(draw(43)));
  const rng = new Rng(7);
  for (let i = 0; i < 1_000; i++) {
    const n = rng.int(2, 4);
    assert(n >= 2 && n <= 4 && Number.isInteger(n));
  }
  assertThrows(() => new Rng(1.5), RangeError);
});
