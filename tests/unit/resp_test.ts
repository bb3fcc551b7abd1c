/**
 * Unit tests of the RESP2 reading and writing of `resp.ts`: commands as bytes, and replies as
 * node-redis answers them, whole or arriving in pieces, ASCII or not.
 *
 * @module
 */

import { ErrorReply } from "npm:@redis/client@^5.12.1";
import { assert, assertEquals } from "../support/assert.ts";
import { encodeCommand, ReplyReader } from "../../src/redis/resp.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("encodeCommand() writes an array of bulk strings with their UTF-8 lengths", () => {
  assertEquals(text(encodeCommand(["GET", "k"])), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
  assertEquals(text(encodeCommand(["SET", "é", ""])), "*3\r\n$3\r\nSET\r\n$2\r\né\r\n$0\r\n\r\n");
  for (const s of ["\u{1F600}", "a\uD800b", "\uDC00", "€uro", "x".repeat(70_000)]) {
    const encoded = encodeCommand([s]);
    const length = new TextEncoder().encode(s).length;
    assertEquals(text(encoded), `*1\r\n$${length}\r\n${new TextDecoder().decode(bytes(s))}\r\n`);
  }
});

/** An XREADGROUP reply of one stream and its entries (RESP2 bytes). */
function xreadReply(stream: string, entries: [string, string[] | null][]): string {
  const bulk = (s: string) => `$${bytes(s).length}\r\n${s}\r\n`;
  let out = `*1\r\n*2\r\n${bulk(stream)}*${entries.length}\r\n`;
  for (const [id, fields] of entries) {
    out += `*2\r\n${bulk(id)}`;
    out += fields === null ? "*-1\r\n" : `*${fields.length}\r\n${fields.map(bulk).join("")}`;
  }
  return out;
}

Deno.test("ReplyReader reads an XREADGROUP reply as node-redis does, a deleted entry's fields as null", () => {
  const r = new ReplyReader();
  r.push(bytes(xreadReply("s", [["1-0", ["event", "a", "payload", "{}"]], ["2-0", null]])));
  assertEquals(r.take(), [["s", [["1-0", ["event", "a", "payload", "{}"]], ["2-0", null]]]]);
  assertEquals(r.take(), undefined, "nothing more");
  assertEquals(r.buffered, 0);
});

Deno.test("ReplyReader reads every type: nil, integers, simple strings, errors, empty ones", () => {
  const r = new ReplyReader();
  r.push(bytes("*-1\r\n$-1\r\n:42\r\n:-7\r\n+OK\r\n-NOGROUP No such key\r\n*0\r\n$0\r\n\r\n"));
  assertEquals(r.take(), null);
  assertEquals(r.take(), null);
  assertEquals(r.take(), 42);
  assertEquals(r.take(), -7);
  assertEquals(r.take(), "OK");
  const err = r.take();
  assert(err instanceof ErrorReply, "an ErrorReply, as node-redis makes");
  assertEquals(err.message, "NOGROUP No such key");
  assertEquals(r.take(), []);
  assertEquals(r.take(), "");
  assertEquals(r.take(), undefined);
});

Deno.test("ReplyReader answers nothing until a reply has all arrived, cut anywhere", () => {
  const reply = bytes(xreadReply("s", [["1-0", ["a", "1", "ü", "x\r\ny"]], ["1-1", ["b", "2"]]]));
  const whole = new ReplyReader();
  whole.push(reply);
  const expected = whole.take();
  for (let cut = 1; cut < reply.length; cut++) {
    const r = new ReplyReader();
    r.push(reply.subarray(0, cut));
    assertEquals(r.take(), undefined, `cut at ${cut}`);
    r.push(reply.subarray(cut));
    assertEquals(r.take(), expected, `cut at ${cut}`);
  }
  // One byte at a time, then two replies in one piece.
  const r = new ReplyReader();
  for (let i = 0; i < reply.length; i++) {
    assertEquals(r.take(), undefined);
    r.push(reply.subarray(i, i + 1));
  }
  assertEquals(r.take(), expected);
  r.push(new Uint8Array([...reply, ...bytes(":1\r\n")]));
  assertEquals(r.take(), expected);
  assertEquals(r.take(), 1);
});

Deno.test("ReplyReader decodes fields that are not ASCII one by one, an invalid byte as U+FFFD", () => {
  const r = new ReplyReader();
  const invalid = new Uint8Array([...bytes("$3\r\na"), 0xff, ...bytes("b\r\n")]);
  r.push(bytes("*3\r\n$5\r\nplain\r\n$4\r\néé\r\n"));
  r.push(invalid);
  assertEquals(r.take(), ["plain", "éé", "a\uFFFDb"]);
  // The same bytes node-redis would decode: TextDecoder's replacement, field by field.
  r.push(bytes(xreadReply("s", [["1-0", ["emoji", "\u{1F600}", "n", "1"]]])));
  assertEquals(r.take(), [["s", [["1-0", ["emoji", "\u{1F600}", "n", "1"]]]]]);
});

Deno.test("ReplyReader grows for a reply larger than its buffer and keeps what follows", () => {
  const r = new ReplyReader();
  const big = "p".repeat(200_000);
  const reply = bytes(`*2\r\n$${big.length}\r\n${big}\r\n:5\r\n+next\r\n`);
  for (let i = 0; i < reply.length; i += 7_000) r.push(reply.subarray(i, i + 7_000));
  assertEquals(r.take(), [big, 5]);
  assertEquals(r.take(), "next");
  assertEquals(r.buffered, 0);
});
