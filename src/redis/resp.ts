/**
 * RESP2, pure: a command as bytes, and replies read back from the bytes a connection received,
 * the way node-redis (RESP2, no type mapping) answers them: arrays as arrays, bulk and simple
 * strings as strings (UTF-8, an invalid byte as U+FFFD), integers as numbers, nil as null, an
 * error reply as node-redis' `ErrorReply` (so that `classifyError` sees it alike).
 *
 * Made for the blocking reader (`blocking_client.ts`), whose XREADGROUP replies carry every entry
 * read: node-redis makes a `Buffer` view and then a string of each field, two objects and a call
 * into the runtime per field, which was the largest part of the consumer's CPU time
 * (bench/RESULTS.md, session 5). Here a reply's bytes are decoded in one call and each field is
 * copied out of that text, when the reply is ASCII (entries usually are); else each field is
 * decoded on its own.
 */
import { ErrorReply } from "npm:@redis/client@^5.12.1";
import { letGo, type RawChunk, type RawChunks } from "./raw_chunks.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A command (`args`, the first its name) as RESP2 bytes: an array of bulk strings. */
export function encodeCommand(args: readonly string[]): Uint8Array {
  let text = `*${args.length}\r\n`;
  for (const a of args) text += `$${byteLength(a)}\r\n${a}\r\n`;
  return encoder.encode(text);
}

/** UTF-8 length of `s` (its length when it is ASCII). */
export function byteLength(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // 2 bytes below U+0800, 3 above; a surrogate pair (2 units) is 4 bytes; a lone surrogate is
    // encoded as U+FFFD (3 bytes), as TextEncoder does.
    if (c >= 0x80) n += c < 0x800 ? 1 : c >= 0xd800 && c <= 0xdfff ? pairOrLone(s, i) : 2;
  }
  return n;
}

/** Extra bytes of the surrogate at `i`: a pair counts 2 per unit; a lone one is U+FFFD. */
function pairOrLone(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c <= 0xdbff) {
    const d = s.charCodeAt(i + 1);
    return d >= 0xdc00 && d <= 0xdfff ? 1 : 2;
  }
  const b = s.charCodeAt(i - 1);
  return b >= 0xd800 && b <= 0xdbff ? 1 : 2;
}

/**
 * `s` (a substring of a reply's text), keeping that text no longer alive. V8 copies a substring
 * shorter than 13 characters, but a longer one is a view that keeps its whole parent alive. A
 * field kept past its reply (an entry's id until it is settled) would then keep the reply
 * (~40 KB) with it, and young objects that old ones point to are kept by every minor GC: with
 * views, 2–9 MB survived each minor GC and RSS went to 210 MiB (bench/RESULTS.md, session 5).
 * The copy: the concatenation below is flattened when sliced, and the slice points into that.
 */
function detach(s: string): string {
  return s.length < 13 ? s : (" " + s).slice(1);
}

/** Scratch space of `Parser.#id`. */
const ID_CODES: number[] = [];

/** Thrown by a read past the bytes received so far. */
const INCOMPLETE = Symbol("incomplete");

/**
 * Reads replies from the bytes of one connection, in order. `push` the bytes as they come; `take`
 * answers the next whole reply, or `undefined` while it has not fully arrived.
 */
export class ReplyReader {
  #buf = new Uint8Array(64 * 1024);
  #len = 0;
  #pos = 0;

  /** Bytes received but not yet taken. */
  get buffered(): number {
    return this.#len - this.#pos;
  }

  /** Room for at least `min` more bytes: where the next read should go. */
  space(min = 16 * 1024): Uint8Array {
    if (this.#pos > 0 && this.#pos === this.#len) this.#pos = this.#len = 0;
    if (this.#buf.length - this.#len < min) {
      const kept = this.#len - this.#pos;
      if (kept + min > this.#buf.length) {
        const next = new Uint8Array(Math.max(this.#buf.length * 2, kept + min));
        next.set(this.#buf.subarray(this.#pos, this.#len));
        this.#buf = next;
      } else {
        this.#buf.copyWithin(0, this.#pos, this.#len);
      }
      this.#pos = 0;
      this.#len = kept;
    }
    return this.#buf.subarray(this.#len);
  }

  /** Records that `n` bytes were read into the last `space()`. */
  wrote(n: number): void {
    this.#len += n;
  }

  /** Appends `bytes` (tests, and callers without a read of their own). */
  push(bytes: Uint8Array): void {
    this.space(bytes.length).set(bytes);
    this.wrote(bytes.length);
  }

  /**
   * The next whole reply (an error reply as an `ErrorReply` value), or undefined for now. With
   * `chunks` (an XREADGROUP reply), the reply's bytes are copied into one of them first and read
   * from there, and each entry comes with where its fields' bytes lie (see `RawEntry`). The
   * reply then holds one reference to its chunk, to give back (`letGo`) once its entries are
   * held; with no entry in it, it holds none. When no chunk has room, it is read as without.
   */
  take(chunks?: RawChunks): unknown {
    const end = this.#end(this.#pos);
    if (end < 0) return undefined;
    const b = this.#buf;
    // An array with entries (not `*-1`, nor an error): kept as bytes, read when asked.
    const place = chunks && b[this.#pos] === 42 && b[this.#pos + 1] !== 45
      ? chunks.copy(b, this.#pos, end)
      : undefined;
    const reply = place
      ? new CapturedReply(place[0], place[1], place[1] + end - this.#pos)
      : new Parser(b, this.#pos, end).value(0);
    this.#pos = end;
    return reply;
  }

  /** Where the reply starting at `p` ends, or -1 when it has not all arrived. */
  #end(p: number): number {
    try {
      return this.#skip(p);
    } catch (err) {
      if (err === INCOMPLETE) return -1;
      throw err;
    }
  }

  /** The place after the value at `p` (reads only the type bytes and lengths). */
  #skip(p: number): number {
    const b = this.#buf;
    if (p >= this.#len) throw INCOMPLETE;
    const type = b[p];
    const [n, next] = lineInt(b, p + 1, this.#len);
    switch (type) {
      case 42: { // * array
        let q = next;
        for (let i = 0; i < n; i++) q = this.#skip(q);
        return q;
      }
      case 36: // $ bulk string
        if (n < 0) return next;
        if (next + n + 2 > this.#len) throw INCOMPLETE;
        return next + n + 2;
      case 43: // + simple string
      case 45: // - error
      case 58: // : integer
        return next;
    }
    throw new Error(`Unexpected byte ${type} in a Redis reply`);
  }
}

/**
 * A reply read with chunks, kept as its bytes in a chunk (holding one reference to it) until
 * `read`: a read reply waits for the reader (it is read ahead) as bytes outside the JS heap, not
 * as arrays and strings that a minor GC would copy.
 */
export class CapturedReply {
  constructor(readonly chunk: RawChunk, readonly start: number, readonly end: number) {}

  /**
   * The reply's values, each entry with where its fields' bytes lie (see `Parser`). The reply
   * then holds its reference to the chunk only when an entry came with its bytes.
   */
  read(): unknown {
    const parser = new Parser(this.chunk.bytes, this.start, this.end, this.chunk);
    const reply = parser.value(0);
    if (!parser.captured) letGo(this.chunk);
    return reply;
  }
}

/**
 * The integer on the line from `p` (an optional minus, then digits) and the place after its CRLF;
 * for a simple string or error line, the place after the line's CRLF (the number is then junk).
 */
function lineInt(b: Uint8Array, p: number, len: number): [number, number] {
  let n = 0;
  let neg = false;
  let q = p;
  if (q < len && b[q] === 45) {
    neg = true;
    q++;
  }
  while (q < len && b[q] !== 13) n = n * 10 + (b[q++] - 48);
  if (q + 1 >= len) throw INCOMPLETE;
  return [neg ? -n : n, q + 2];
}

/**
 * Builds the values of one whole reply in `b` from `start` to `end`. With `chunk` (`b` is its
 * bytes), an XREADGROUP reply's entries (the pairs at depth 3) come with where their fields lie
 * in it: `[id, fields, chunk, start]` (see `RawEntry`; a deleted entry's stays a pair).
 */
class Parser {
  #p: number;
  #text?: string;
  #ascii = false;
  /** True once an entry came with its bytes. */
  captured = false;
  /** Where the last fields array read (depth 4) starts. */
  #fields = 0;

  constructor(
    readonly b: Uint8Array,
    readonly start: number,
    readonly end: number,
    readonly chunk?: RawChunk,
  ) {
    this.#p = start;
  }

  value(depth: number): unknown {
    const b = this.b;
    const type = b[this.#p];
    const [n, next] = lineInt(b, this.#p + 1, this.end);
    switch (type) {
      case 42: {
        this.#p = next;
        if (n < 0) return null;
        // With a chunk, an entry's fields (depth 4) note where they start; the entry (depth 3)
        // gets its chunk and that. Every array is made here, at this one allocation site: one
        // only for entries (some live across a minor GC) could be pretenured by V8, and an old
        // entry keeps its young fields alive until a full GC (docs/architecture.md, "Memory on
        // the hot path").
        const entry = depth === 3 && n === 2 && this.chunk !== undefined;
        const out = new Array(entry ? 4 : n);
        if (depth === 4) this.#fields = next;
        for (let i = 0; i < n; i++) out[i] = entry && i === 0 ? this.#id() : this.value(depth + 1);
        if (entry) {
          if (out[1] === null) out.length = 2;
          else {
            out[2] = this.chunk;
            out[3] = this.#fields;
            this.captured = true;
          }
        }
        return out;
      }
      case 36:
        if (n < 0) {
          this.#p = next;
          return null;
        }
        this.#p = next + n + 2;
        return this.#string(next, next + n);
      case 58:
        this.#p = next;
        return n;
      case 43: // the line after the type byte, up to its CRLF
      case 45: {
        const text = this.#string(this.#p + 1, next - 2);
        this.#p = next;
        return type === 43 ? text : new ErrorReply(text);
      }
    }
    throw new Error(`Unexpected byte ${type} in a Redis reply`);
  }

  /**
   * An entry's id (at depth 4), as one flat string made from its bytes: `detach`'s copy is a
   * view of a string one character longer, two objects where one will do, and an id lives as
   * long as its entry is held (each of its bytes copied by every minor GC meanwhile).
   */
  #id(): unknown {
    const b = this.b;
    if (b[this.#p] !== 36) return this.value(4);
    const [n, next] = lineInt(b, this.#p + 1, this.end);
    if (n < 13 || n > 40) return this.value(4);
    for (let i = 0; i < n; i++) {
      const c = b[next + i];
      if (c >= 0x80) return this.value(4);
      ID_CODES[i] = c;
    }
    ID_CODES.length = n;
    this.#p = next + n + 2;
    return String.fromCharCode.apply(null, ID_CODES);
  }

  /** The text of bytes `a` to `e`: copied from the reply decoded once when it is ASCII. */
  #string(a: number, e: number): string {
    if (this.#text === undefined) {
      this.#text = decoder.decode(this.b.subarray(this.start, this.end));
      this.#ascii = this.#text.length === this.end - this.start;
    }
    if (!this.#ascii) return decoder.decode(this.b.subarray(a, e));
    return detach(this.#text.slice(a - this.start, e - this.start));
  }
}
