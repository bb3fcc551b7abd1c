/**
 * Commands written as RESP2 bytes in parts into a buffer reused from one command to the next,
 * pure (`CommandWriter`): the settle calls that carry forwarded entries' bytes as they were read
 * (`settle_command.ts`). `encodeCommand` of `resp.ts` writes a whole command of strings at once.
 */
import { byteLength } from "./resp.ts";

const encoder = new TextEncoder();

/**
 * Writes one command as RESP2 bytes into a buffer it reuses: `begin` with the number of
 * arguments, then each as `bulk` (a string) or as RESP bytes written already elsewhere (`raw`,
 * whole bulk strings, counted in `begin`), then `done` for the bytes, valid until the next
 * `begin`.
 */
export class CommandWriter {
  #buf = new Uint8Array(64 * 1024);
  #len = 0;

  /** Starts a command of `argc` arguments. */
  begin(argc: number): void {
    this.#len = 0;
    this.#room(16);
    this.#buf[0] = 42; // *
    this.#len = this.#crlf(writeInt(this.#buf, 1, argc));
  }

  /** One argument, a string (one pass when it is ASCII). */
  bulk(s: string): void {
    const n = s.length;
    this.#room(n + 16);
    const b = this.#buf;
    const start = this.#len;
    b[start] = 36; // $
    let at = this.#crlf(writeInt(b, start + 1, n));
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) return this.#bulkUtf8(s, start);
      b[at++] = c;
    }
    this.#len = this.#crlf(at);
  }

  /** One argument made of parts: `$<length>`, then `raw` bytes and `text`, then `end`. */
  head(length: number): void {
    this.#room(length + 16);
    this.#buf[this.#len] = 36; // $
    this.#len = this.#crlf(writeInt(this.#buf, this.#len + 1, length));
  }

  /** Bytes `src[a, e)` as they are (whole bulk strings, or a part after `head`). */
  raw(src: Uint8Array, a: number, e: number): void {
    this.#room(e - a);
    const b = this.#buf;
    if (e - a < 64) {
      let at = this.#len;
      for (let i = a; i < e; i++) b[at++] = src[i];
      this.#len = at;
    } else {
      b.set(src.subarray(a, e), this.#len);
      this.#len += e - a;
    }
  }

  /** ASCII text as it is (a part after `head`). */
  text(s: string): void {
    this.#room(s.length);
    const b = this.#buf;
    let at = this.#len;
    for (let i = 0; i < s.length; i++) b[at++] = s.charCodeAt(i);
    this.#len = at;
  }

  /** Ends an argument made of parts. */
  end(): void {
    this.#room(2);
    this.#len = this.#crlf(this.#len);
  }

  /**
   * Room for `n` more bytes: the buffer to write them into from `length`, then `wrote` with the
   * place after them (for callers that write several small parts at once).
   */
  reserve(n: number): Uint8Array {
    this.#room(n);
    return this.#buf;
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#len;
  }

  /** Records that the bytes up to `at` were written (after `reserve`). */
  wrote(at: number): void {
    this.#len = at;
  }

  /** The command's bytes (a view of the buffer, valid until the next `begin`). */
  done(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }

  /** `s` as UTF-8, its length counted in bytes, written from `start`. */
  #bulkUtf8(s: string, start: number): void {
    const n = byteLength(s);
    this.#len = start;
    this.#room(n + 16);
    const b = this.#buf;
    b[start] = 36; // $
    const at = this.#crlf(writeInt(b, start + 1, n));
    this.#len = this.#crlf(at + encoder.encodeInto(s, b.subarray(at)).written);
  }

  /** CRLF at `at`; the place after it. */
  #crlf(at: number): number {
    this.#buf[at] = 13;
    this.#buf[at + 1] = 10;
    return at + 2;
  }

  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + n));
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }
}

/** The decimal digits of `n` (0 or more) written at `at`; the place after them. */
export function writeInt(b: Uint8Array, at: number, n: number): number {
  let digits = 1;
  for (let k = n; k >= 10; k = Math.floor(k / 10)) digits++;
  for (let i = at + digits - 1; i >= at; i--) {
    b[i] = 48 + (n % 10);
    n = Math.floor(n / 10);
  }
  return at + digits;
}
