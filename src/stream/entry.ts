/**
 * Stream entries in the wire format of `@nelreina/redis-stream-event`
 * (README: Stream entries): parsing with zod into `StreamEvent`, building the fields
 * of a published entry, and ISO 8601 timestamps in a configured zone. Pure.
 */
import { z } from "npm:zod@^4.6.7";
import { pairsToRecord } from "../redis/reply.ts";

/** Largest entry accepted, summed over field names and values (bytes). */
export const MAX_ENTRY_BYTES = 1024 * 1024;

/** Most fields an entry may have; one with more goes to the dead-letter stream at once. */
export const MAX_ENTRY_FIELDS = 1000;

/** Raw fields as Redis returns them. */
export type EntryFields = Record<string, string>;

/** A parsed, well-formed entry. */
export interface StreamEvent {
  /** Stream the entry came from. */
  stream: string;
  /** Entry id. */
  id: string;
  event: string;
  aggregateId: string;
  timestamp?: string;
  payload: Record<string, unknown>;
  serviceName?: string;
  headers: Record<string, string>;
  mimeType?: string;
  /** Every field as read, including unknown ones. */
  fields: EntryFields;
}

/** Why an entry cannot be handled; it goes to the dead-letter stream at once. */
export class MalformedEntryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MalformedEntryError";
  }
}

const jsonObject = (what: string) =>
  z.string({ error: `missing field ${what}` }).transform((s, ctx) => {
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch {
      ctx.addIssue({ code: "custom", message: `${what} is not JSON` });
      return z.NEVER;
    }
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      ctx.addIssue({ code: "custom", message: `${what} is not a JSON object` });
      return z.NEVER;
    }
    return v as Record<string, unknown>;
  });

const fieldsSchema = z.object({
  event: z.string({ error: "missing field event" }).min(1, "empty field event").max(
    256,
    "field event is longer than 256 characters",
  ),
  aggregateId: z.string().optional(),
  timestamp: z.string().optional(),
  payload: jsonObject("payload"),
  serviceName: z.string().optional(),
  headers: jsonObject("headers").optional().transform((h, ctx) => {
    if (!h) return {};
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(h)) {
      if (typeof v === "string") out[k] = v;
      else if (typeof v === "number" || typeof v === "boolean") out[k] = String(v);
      else {
        ctx.addIssue({ code: "custom", message: `headers.${k} is not a string` });
        return z.NEVER;
      }
    }
    return out;
  }),
  mimeType: z.string().optional(),
});

/**
 * An entry's fields as a record. The wire format's six fields in the publisher's order (see
 * `toFields`: most entries) make one object of a fixed shape, built at once; anything else goes
 * through `pairsToRecord`.
 */
export function entryRecord(flat: readonly string[]): EntryFields {
  if (
    flat.length === 12 && flat[0] === "event" && flat[2] === "aggregateId" &&
    flat[4] === "timestamp" && flat[6] === "payload" && flat[8] === "serviceName" &&
    flat[10] === "headers"
  ) {
    return {
      event: flat[1],
      aggregateId: flat[3],
      timestamp: flat[5],
      payload: flat[7],
      serviceName: flat[9],
      headers: flat[11],
    };
  }
  return pairsToRecord(flat);
}

/** UTF-8 length of `s` in bytes, without encoding it. */
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // 2 bytes below U+0800, 3 above; a surrogate pair (2 units) is 4 bytes.
    if (c >= 0x80) n += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1;
  }
  return n;
}

/** Size of an entry in UTF-8 bytes, summed over field names and values. */
export function entrySize(fields: EntryFields): number {
  let n = 0;
  for (const k in fields) n += utf8Length(k) + utf8Length(fields[k]);
  return n;
}

/** True when the entry may be over `limit` bytes (cheap: a UTF-16 unit is at most 3 bytes). */
function mayExceed(fields: EntryFields, limit: number): boolean {
  let units = 0;
  for (const k in fields) units += k.length + fields[k].length;
  return units * 3 > limit;
}

/**
 * The common case without zod: a well-formed entry parsed by hand. Returns
 * undefined for anything unusual; zod then decides and explains.
 */
function parseFast(stream: string, id: string, fields: EntryFields): StreamEvent | undefined {
  const event = fields.event;
  const text = fields.payload;
  if (typeof event !== "string" || event.length === 0 || event.length > 256) return undefined;
  if (typeof text !== "string") return undefined;
  let payload: unknown;
  let headers: unknown = {};
  try {
    payload = JSON.parse(text);
    if (fields.headers !== undefined) headers = JSON.parse(fields.headers);
  } catch {
    return undefined;
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) return undefined;
  if (headers === null || typeof headers !== "object" || Array.isArray(headers)) return undefined;
  for (const k in headers as Record<string, unknown>) {
    if (typeof (headers as Record<string, unknown>)[k] !== "string") return undefined;
  }
  const aggregateId = fields.aggregateId;
  return {
    stream,
    id,
    event,
    aggregateId: aggregateId ? aggregateId : id,
    timestamp: fields.timestamp,
    payload: payload as Record<string, unknown>,
    serviceName: fields.serviceName,
    headers: headers as Record<string, string>,
    mimeType: fields.mimeType,
    fields,
  };
}

/**
 * Parses one entry. `payload` is required (JSON object text), as is `event`;
 * `aggregateId` defaults to the entry id (no ordering constraint then).
 * @throws {MalformedEntryError} saying what is wrong.
 */
export function parseEntry(stream: string, id: string, fields: EntryFields | null): StreamEvent {
  if (fields === null) throw new MalformedEntryError("entry was deleted or trimmed");
  if (mayExceed(fields, MAX_ENTRY_BYTES)) {
    const size = entrySize(fields);
    if (size > MAX_ENTRY_BYTES) {
      throw new MalformedEntryError(`entry is ${size} bytes, over the 1 MB limit`);
    }
  }
  const fast = parseFast(stream, id, fields);
  if (fast) return fast;
  const r = fieldsSchema.safeParse(fields);
  if (!r.success) {
    throw new MalformedEntryError(r.error.issues.map((i) => i.message).join("; "));
  }
  const f = r.data;
  return {
    stream,
    id,
    event: f.event,
    aggregateId: f.aggregateId && f.aggregateId.length > 0 ? f.aggregateId : id,
    timestamp: f.timestamp,
    payload: f.payload,
    serviceName: f.serviceName,
    headers: f.headers,
    mimeType: f.mimeType,
    fields,
  };
}

/** What a publisher supplies. */
export interface OutgoingEvent {
  event: string;
  aggregateId: string;
  payload: Record<string, unknown>;
  headers: Record<string, string>;
  serviceName: string;
  timestamp: string;
  mimeType?: string;
}

/** The flat field list of an entry to XADD. */
export function toFields(e: OutgoingEvent): Record<string, string> {
  const fields: Record<string, string> = {
    event: e.event,
    aggregateId: e.aggregateId,
    timestamp: e.timestamp,
    payload: JSON.stringify(e.payload),
    serviceName: e.serviceName,
    headers: JSON.stringify(e.headers),
  };
  if (e.mimeType) fields.mimeType = e.mimeType;
  return fields;
}

/**
 * The `headers` of a forwarded copy: the entry's, with `sourceStream` and `sourceId` added
 * (replaced where they were). Without them already (the usual case) the two are appended to
 * the entry's headers as text: the same JSON as the spread below, without building the object.
 */
export function forwardHeaders(event: StreamEvent): string {
  const h = event.headers;
  if (h.sourceStream !== undefined || h.sourceId !== undefined) {
    return JSON.stringify({ ...h, sourceStream: event.stream, sourceId: event.id });
  }
  const own = JSON.stringify(h);
  const tail = `${sourceStreamJson(event.stream)},"sourceId":"${event.id}"}`;
  return own.length === 2 ? `{${tail}` : `${own.slice(0, -1)},${tail}`;
}

/**
 * True when the settle script can make the forwarded copy's headers itself, from the entry's own
 * `headers` field as Redis holds it (`ForwardCopy` without headers): that field is absent, or it
 * is exactly the JSON text of the parsed headers (as `JSON.stringify` writes it, which is what
 * `forwardHeaders` extends), and neither `sourceStream` nor `sourceId` is among them. The script
 * then writes what `forwardHeaders` would: the field without its closing brace, then
 * `,"sourceStream":…,"sourceId":"…"}` (no comma after `{}`). A field that decoded with U+FFFD
 * (bytes that are not UTF-8) is left to `forwardHeaders`, whose text Redis would not hold.
 */
export function headersExtendable(event: StreamEvent): boolean {
  const h = event.headers;
  if (h.sourceStream !== undefined || h.sourceId !== undefined) return false;
  const raw = event.fields.headers;
  if (raw === undefined) return true;
  return raw.length >= 2 && raw === JSON.stringify(h) && !raw.includes("\uFFFD");
}

/** The text the settle script appends for a forwarded copy of `stream`, before the id. */
export function sourceHeadersPrefix(stream: string): string {
  return `${sourceStreamJson(stream)},"sourceId":"`;
}

let lastStream = "";
let lastStreamJson = "";

/** `"sourceStream":<stream as JSON>`, made once per stream in a row (not once per entry). */
function sourceStreamJson(stream: string): string {
  if (stream !== lastStream) {
    lastStream = stream;
    lastStreamJson = `"sourceStream":${JSON.stringify(stream)}`;
  }
  return lastStreamJson;
}

const offsetCache = new Map<string, Intl.DateTimeFormat>();

/**
 * ISO 8601 with milliseconds in `timeZone`, with its offset (`Z` for UTC).
 * @example isoInZone(new Date(0), "Europe/Amsterdam") // "1970-01-01T01:00:00.000+01:00"
 */
export function isoInZone(date: Date, timeZone: string): string {
  if (timeZone === "UTC") return date.toISOString();
  let fmt = offsetCache.get(timeZone);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    offsetCache.set(timeZone, fmt);
  }
  const parts: Record<string, string> = {};
  for (const p of fmt.formatToParts(date)) parts[p.type] = p.value;
  const wall = Date.UTC(
    Number(parts.year),
    Number(parts.month) - 1,
    Number(parts.day),
    Number(parts.hour),
    Number(parts.minute),
    Number(parts.second),
  );
  const offsetMin = Math.round((wall - (date.getTime() - date.getUTCMilliseconds())) / 60_000);
  const sign = offsetMin < 0 ? "-" : "+";
  const abs = Math.abs(offsetMin);
  const ms = String(date.getUTCMilliseconds()).padStart(3, "0");
  const off = `${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${
    String(abs % 60).padStart(2, "0")
  }`;
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}.${ms}${off}`;
}
