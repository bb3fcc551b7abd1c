/**
 * A settle call as bytes, pure: `EVALSHA <sha> <numkeys> <keys…> <args…>` as `encodeSettle`
 * (`settle_codec.ts`, with `bytes`) lays it out, where each `#` forward's fields are copied from
 * the RESP bytes it was read as (`RawFields`, kept by the reader in a `RawChunk`): field names
 * and values byte for byte, in their order, and its last headers field extended with
 * `sourceStream` and `sourceId` as the script extends it for a `+` forward (`forwardHeaders` of
 * `entry.ts`; the dispatcher sends a `#` only for an entry whose headers field is that JSON,
 * `headersExtendable`), or a headers field appended when it has none. Nothing of the entry is
 * decoded or encoded again, and the script copies it with no XRANGE (bench/RESULTS.md, session
 * 10). Sent by `RedisLink.execBytes`.
 */
import { type CommandWriter, writeInt } from "../../redis/command_writer.ts";
import {
  type EncodedSettle,
  rawAppends,
  rawCopyCount,
  rawFieldCount,
  type RawFields,
  rawStart,
  type SettleOpInput,
} from "./settle_codec.ts";

const encoder = new TextEncoder();
/** The bulk string `headers`, appended before the new headers of an entry without them. */
const HEADERS_NAME = encoder.encode("$7\r\nheaders\r\n");

/**
 * The call's bytes (a view of `w`'s buffer, valid until its next command). `prefix`: the text
 * before an entry's id in its new headers (`sourceHeadersPrefix` of the batch's stream).
 */
export function writeSettleCommand<T extends SettleOpInput>(
  w: CommandWriter,
  sha: string,
  call: EncodedSettle<T>,
  prefix: string,
): Uint8Array {
  const { keys, args, raws, rawAt } = call;
  let argc = 3 + keys.length + args.length;
  for (const op of raws) argc += rawCopyCount(op.rawSpan!);
  w.begin(argc);
  w.bulk("EVALSHA");
  w.bulk(sha);
  w.bulk(String(keys.length));
  for (const k of keys) w.bulk(k);
  const head = raws.length > 0 ? encoder.encode(prefix) : HEADERS_NAME;
  let next = 0;
  let at = rawAt.length > 0 ? rawAt[0] : -1;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    w.bulk(arg);
    if (i === at) {
      writeFields(w, raws[next], arg, head);
      at = ++next < rawAt.length ? rawAt[next] : -1;
    }
  }
  return w.done();
}

/** The fields of entry `id` from its bytes, its headers extended (see the module comment). */
function writeFields(w: CommandWriter, raw: RawFields, id: string, prefix: Uint8Array): void {
  const src = raw.rawChunk!.bytes;
  const span = raw.rawSpan!;
  const append = rawAppends(span);
  const start = rawStart(span);
  // Its fields up to its last headers value (replaced), or all of them (headers appended).
  let cut = start;
  let end = start;
  for (let i = rawFieldCount(span) >> 1; i > 0; i--) {
    const name = end;
    end = skipBulks(src, end, 1);
    if (!append && isHeaders(src, name)) cut = end;
    end = skipBulks(src, end, 1);
  }
  if (append) cut = end;
  w.raw(src, start, cut);
  // New headers: `{` or the entry's own headers without their `}` and with a comma (unless
  // they are `{}`), then `<prefix><id>"}`.
  let own = 0;
  let from = 0;
  let after = end;
  if (append) w.raw(HEADERS_NAME, 0, HEADERS_NAME.length);
  else {
    // Its headers value, `$<length>\r\n<bytes>\r\n`, at `cut`.
    let p = cut + 1;
    while (src[p] !== 13) own = own * 10 + (src[p++] - 48);
    from = p + 2;
    after = from + own + 2;
  }
  const comma = own > 2 ? 1 : 0;
  const length = Math.max(own - 1, 1) + comma + prefix.length + id.length + 2;
  const b = w.reserve(length + 16);
  let at = w.length;
  b[at++] = 36; // $
  at = writeInt(b, at, length);
  b[at++] = 13;
  b[at++] = 10;
  if (own > 0) { for (let i = from, e = from + own - 1; i < e; i++) b[at++] = src[i]; }
  else b[at++] = 123; // {
  if (comma) b[at++] = 44; // ,
  for (let i = 0; i < prefix.length; i++) b[at++] = prefix[i];
  for (let i = 0; i < id.length; i++) b[at++] = id.charCodeAt(i);
  b[at++] = 34; // "
  b[at++] = 125; // }
  b[at++] = 13;
  b[at++] = 10;
  w.wrote(at);
  // The fields after its headers (none when they were last, or appended).
  if (after < end) w.raw(src, after, end);
}

/** True when the bulk string at `p` is `headers` (the bytes of `HEADERS_NAME`). */
function isHeaders(b: Uint8Array, p: number): boolean {
  for (let i = 0; i < HEADERS_NAME.length; i++) if (b[p + i] !== HEADERS_NAME[i]) return false;
  return true;
}

/** The place after `n` bulk strings (`$<length>\r\n<bytes>\r\n`) from `p` in `b`. */
function skipBulks(b: Uint8Array, p: number, n: number): number {
  for (let i = 0; i < n; i++) {
    let length = 0;
    p++; // $
    while (b[p] !== 13) length = length * 10 + (b[p++] - 48);
    p += 2 + length + 2;
  }
  return p;
}
