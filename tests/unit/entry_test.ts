/**
 * Unit tests of src/stream/entry.ts: `parseEntry` on well-formed and
 * malformed entries (wire format in README: Stream entries), the `aggregateId`
 * default, `toFields` round trip, `isoInZone` offsets (UTC, DST zones and
 * half-hour zones) and `entrySize`.
 */
import {
  entrySize,
  forwardHeaders,
  headersExtendable,
  isoInZone,
  MalformedEntryError,
  parseEntry,
  sourceHeadersPrefix,
  type StreamEvent,
  toFields,
} from "../../src/stream/entry.ts";
import { assert, assertEquals, assertStringIncludes, assertThrows } from "../support/assert.ts";

const WIRE = {
  event: "order.created",
  aggregateId: "order-42",
  timestamp: "2025-01-28T10:00:00.000Z",
  payload: '{"total":12.5,"items":[1,2]}',
  serviceName: "shop",
  headers: '{"correlationId":"c-1","idempotencyKey":"k-1"}',
  mimeType: "application/json",
};

function malformed(fields: Record<string, string> | null, includes?: string): void {
  assertThrows(() => parseEntry("s", "1-0", fields), MalformedEntryError, includes);
}

Deno.test("parseEntry() reads every wire field and keeps unknown fields", () => {
  const fields = { ...WIRE, tenant: "acme" };
  const e = parseEntry("orders", "1700000000000-3", fields);
  assertEquals(e, {
    stream: "orders",
    id: "1700000000000-3",
    event: "order.created",
    aggregateId: "order-42",
    timestamp: "2025-01-28T10:00:00.000Z",
    payload: { total: 12.5, items: [1, 2] },
    serviceName: "shop",
    headers: { correlationId: "c-1", idempotencyKey: "k-1" },
    mimeType: "application/json",
    fields,
  });
  assertEquals(e.fields.tenant, "acme");
});

Deno.test("parseEntry() needs only event and payload", () => {
  const e = parseEntry("s", "5-1", { event: "x", payload: "{}" });
  assertEquals(e.headers, {});
  assertEquals(e.payload, {});
  assertEquals(e.timestamp, undefined);
  assertEquals(e.serviceName, undefined);
});

Deno.test("parseEntry() defaults aggregateId to the entry id", () => {
  assertEquals(parseEntry("s", "5-1", { event: "x", payload: "{}" }).aggregateId, "5-1");
  assertEquals(
    parseEntry("s", "5-2", { event: "x", payload: "{}", aggregateId: "" }).aggregateId,
    "5-2",
  );
});

Deno.test("parseEntry() throws MalformedEntryError for a deleted entry (null fields)", () => {
  malformed(null, "deleted");
});

Deno.test("parseEntry() throws MalformedEntryError without event or payload", () => {
  malformed({ payload: "{}" }, "event");
  malformed({ event: "", payload: "{}" }, "event");
  malformed({ event: "x" }, "payload");
  malformed({ event: "e".repeat(257), payload: "{}" }, "event");
});

Deno.test("parseEntry() throws MalformedEntryError when payload is not a JSON object", () => {
  malformed({ event: "x", payload: "{not json" }, "payload is not JSON");
  malformed({ event: "x", payload: "[1,2]" }, "payload is not a JSON object");
  malformed({ event: "x", payload: "null" }, "payload is not a JSON object");
  malformed({ event: "x", payload: '"text"' }, "payload is not a JSON object");
  malformed({ event: "x", payload: "42" }, "payload is not a JSON object");
});

Deno.test("parseEntry() throws MalformedEntryError for bad headers", () => {
  malformed({ event: "x", payload: "{}", headers: "nope" }, "headers is not JSON");
  malformed({ event: "x", payload: "{}", headers: '["a"]' }, "headers is not a JSON object");
  malformed({ event: "x", payload: "{}", headers: '{"a":{"b":"c"}}' }, "headers.a");
  malformed({ event: "x", payload: "{}", headers: '{"a":null}' }, "headers.a");
  malformed({ event: "x", payload: "{}", headers: '{"a":["x"]}' }, "headers.a");
});

Deno.test("parseEntry() throws MalformedEntryError for an entry over 1 MB", () => {
  const big = JSON.stringify({ blob: "x".repeat(1024 * 1024) });
  const err = assertThrows(
    () => parseEntry("s", "1-0", { event: "x", payload: big }),
    MalformedEntryError,
  );
  assertStringIncludes(err.message, "1 MB");
  // Bytes, not characters: 600,000 two-byte characters are 1.2 MB on the wire.
  malformed({ event: "x", payload: JSON.stringify({ blob: "é".repeat(600_000) }) }, "1 MB");
  // Just under the limit is fine.
  const fits = JSON.stringify({ blob: "x".repeat(1024 * 1024 - 100) });
  assertEquals(parseEntry("s", "1-0", { event: "x", payload: fits }).event, "x");
});

Deno.test("toFields() output parses back into the same event", () => {
  const out = {
    event: "user.signed_up",
    aggregateId: "user-7",
    payload: { name: "Zoë", nested: { ok: true } },
    headers: { correlationId: "abc", traceparent: "00-1-2-01" },
    serviceName: "users",
    timestamp: "2025-06-28T23:40:13.653+02:00",
    mimeType: "application/json",
  };
  const fields = toFields(out);
  for (const v of Object.values(fields)) assertEquals(typeof v, "string");
  const e = parseEntry("users", "9-0", fields);
  assertEquals(
    {
      event: e.event,
      aggregateId: e.aggregateId,
      payload: e.payload,
      headers: e.headers,
      serviceName: e.serviceName,
      timestamp: e.timestamp,
      mimeType: e.mimeType,
    },
    out,
  );
  const { mimeType: _m, ...noMime } = out;
  assertEquals("mimeType" in toFields(noMime), false);
});

Deno.test("isoInZone() uses Z for UTC", () => {
  const d = new Date("2025-01-15T12:00:00.123Z");
  assertEquals(isoInZone(d, "UTC"), "2025-01-15T12:00:00.123Z");
});

Deno.test("isoInZone() gives Europe/Amsterdam +01:00 in winter and +02:00 in summer", () => {
  assertEquals(
    isoInZone(new Date("2025-01-15T12:00:00.123Z"), "Europe/Amsterdam"),
    "2025-01-15T13:00:00.123+01:00",
  );
  assertEquals(
    isoInZone(new Date("2025-07-15T12:00:00.007Z"), "Europe/Amsterdam"),
    "2025-07-15T14:00:00.007+02:00",
  );
  // Around the spring-forward switch (2025-03-30 01:00 UTC) and at local midnight.
  assertEquals(
    isoInZone(new Date("2025-03-30T00:59:59.999Z"), "Europe/Amsterdam"),
    "2025-03-30T01:59:59.999+01:00",
  );
  assertEquals(
    isoInZone(new Date("2025-03-30T01:00:00.000Z"), "Europe/Amsterdam"),
    "2025-03-30T03:00:00.000+02:00",
  );
  assertEquals(
    isoInZone(new Date("2025-01-14T23:00:00.000Z"), "Europe/Amsterdam"),
    "2025-01-15T00:00:00.000+01:00",
  );
});

Deno.test("isoInZone() gives Asia/Kolkata +05:30", () => {
  assertEquals(
    isoInZone(new Date("2025-01-15T12:00:00.500Z"), "Asia/Kolkata"),
    "2025-01-15T17:30:00.500+05:30",
  );
  assertEquals(
    isoInZone(new Date("2025-12-31T20:00:00.000Z"), "Asia/Kolkata"),
    "2026-01-01T01:30:00.000+05:30",
  );
});

Deno.test("isoInZone() gives America/St_Johns -03:30 in winter and -02:30 in summer", () => {
  assertEquals(
    isoInZone(new Date("2025-01-15T12:00:00.000Z"), "America/St_Johns"),
    "2025-01-15T08:30:00.000-03:30",
  );
  assertEquals(
    isoInZone(new Date("2025-07-15T12:00:00.000Z"), "America/St_Johns"),
    "2025-07-15T09:30:00.000-02:30",
  );
});

Deno.test("isoInZone() output denotes the same instant", () => {
  const d = new Date("2025-07-15T12:34:56.789Z");
  for (const zone of ["UTC", "Europe/Amsterdam", "Asia/Kolkata", "America/St_Johns"]) {
    assertEquals(new Date(isoInZone(d, zone)).getTime(), d.getTime(), zone);
  }
});

Deno.test("entrySize() counts UTF-8 bytes of names and values", () => {
  const fields = { a: "x", "é": "€", emoji: "😀" };
  const expected = new TextEncoder().encode(Object.entries(fields).flat().join("")).length;
  assertEquals(entrySize(fields), expected);
  assertEquals(entrySize({ ab: "cd" }), 4);
});

Deno.test("forwardHeaders() is the entry's headers with sourceStream and sourceId, as a spread makes them", () => {
  const spread = (e: StreamEvent) =>
    JSON.stringify({ ...e.headers, sourceStream: e.stream, sourceId: e.id });
  const event = (headers: Record<string, string>, stream = "orders"): StreamEvent => ({
    stream,
    id: "1764520000000-7",
    event: "order.created",
    aggregateId: "a",
    payload: {},
    headers,
    fields: {},
  });
  const cases: Record<string, string>[] = [
    {},
    { correlationId: "c-1" },
    { "2": "two", correlationId: 'é "quoted" \u2028', "1": "one" },
    { sourceId: "old", traceparent: "00-x" },
    { sourceStream: "elsewhere" },
  ];
  for (const headers of cases) {
    for (const stream of ["orders", 'we"ird\\stream']) {
      const e = event(headers, stream);
      assertEquals(forwardHeaders(e), spread(e), JSON.stringify(headers));
    }
  }
});

Deno.test("headersExtendable(): the script's extension of the own field is forwardHeaders()", () => {
  const event = (raw: string | undefined, stream = "orders"): StreamEvent => {
    const fields: Record<string, string> = raw === undefined ? {} : { headers: raw };
    return parseEntry(stream, "1764520000000-7", {
      event: "order.created",
      payload: "{}",
      ...fields,
    });
  };
  // What the settle script writes for an extendable field (settle_script.ts, forwardCopy).
  const extended = (e: StreamEvent) => {
    const own = e.fields.headers;
    const tail = `${sourceHeadersPrefix(e.stream)}${e.id}"}`;
    return own === undefined || own === "{}" ? `{${tail}` : `${own.slice(0, -1)},${tail}`;
  };
  const extendable = [undefined, "{}", '{"correlationId":"c-1"}', '{"name":"zoë ✓ 😀"}'];
  for (const raw of extendable) {
    for (const stream of ["orders", 'we"ird\\stream']) {
      const e = event(raw, stream);
      assert(headersExtendable(e), `${raw} on ${stream}`);
      assertEquals(extended(e), forwardHeaders(e), `${raw} on ${stream}`);
    }
  }
  // Not the JSON text of their parse, or already naming a source, or not UTF-8: the process
  // makes these headers itself.
  const notExtendable = [
    '{ "correlationId": "c-1" }',
    '{"name":"zo\\u00eb"}',
    '{"2":"two","1":"one"}',
    '{"sourceId":"old"}',
    '{"sourceStream":"elsewhere"}',
    '{"bad":"\uFFFD"}',
  ];
  for (const raw of notExtendable) assert(!headersExtendable(event(raw)), raw);
});
