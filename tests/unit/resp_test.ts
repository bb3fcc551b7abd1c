/**
 * Unit tests of the RESP2 reading and writing of `resp.ts` and `command_writer.ts`: commands as
 * bytes (`encodeCommand`, `CommandWriter`), and replies as node-redis answers them, whole or arriving in pieces, ASCII or
 * not, an XREADGROUP reply's entries with where their bytes lie.
 *
 * @module
 */

import { ErrorReply } from "npm:@redis/client@^5.12.1";
import { assert, assertEquals } from "../support/assert.ts";
import { CapturedReply, encodeCommand, ReplyReader } from "../../src/redis/resp.ts";
import { CommandWriter } from "../../src/redis/command_writer.ts";
import { RawChunks } from "../../src/redis/raw_chunks.ts";

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

Deno.test("CommandWriter writes what encodeCommand() writes, and parts and bytes as given", () => {
  const w = new CommandWriter();
  const args = ["EVALSHA", "é", "", "\u{1F600}", "a\uD800b", "x".repeat(70_000), "ascii"];
  for (let round = 0; round < 2; round++) { // the buffer, grown by the first, is reused
    w.begin(args.length);
    for (const a of args) w.bulk(a);
    assertEquals(text(w.done()), text(encodeCommand(args)));
  }
  w.begin(3);
  w.bulk("SET");
  w.raw(bytes("$1\r\nk\r\n"), 0, 7);
  w.head(11);
  w.text("{");
  w.raw(bytes("x" + "ü".repeat(4) + "x"), 1, 9); // the ü's: 8 bytes
  w.text('"}');
  w.end();
  assertEquals(text(w.done()), '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$11\r\n{üüüü"}\r\n');
});

Deno.test("ReplyReader with chunks reads an XREADGROUP reply from a copy and says where each entry's bytes lie", () => {
  const r = new ReplyReader();
  const chunks = new RawChunks();
  const wire = xreadReply("s", [["1-0", ["event", "a", "headers", "{}"]], ["2-0", null], [
    "3-0",
    ["payload", "é"],
  ]]);
  r.push(bytes(wire));
  const captured = r.take(chunks);
  assert(captured instanceof CapturedReply, "kept as bytes until read");
  const reply = captured.read() as [string, unknown[][]][];
  const [[, [first, gone, third]]] = reply;
  assertEquals([first[0], first[1], gone, third[0], third[1]], [
    "1-0",
    ["event", "a", "headers", "{}"],
    ["2-0", null],
    "3-0",
    ["payload", "é"],
  ]);
  const chunk = first[2] as { bytes: Uint8Array; refs: number };
  assertEquals(chunk.refs, 1, "the reply's reference");
  // Each entry's fields start at its first field name's `$` in the chunk.
  const from = (e: unknown[], s: string) => {
    const start = e[3] as number;
    return text(chunk.bytes.subarray(start, start + bytes(s).length));
  };
  const firstFields = "$5\r\nevent\r\n$1\r\na\r\n$7\r\nheaders\r\n$2\r\n{}\r\n";
  assertEquals(from(first, firstFields), firstFields);
  assertEquals(from(third, "$7\r\npayload\r\n$2\r\né\r\n"), "$7\r\npayload\r\n$2\r\né\r\n");
  assertEquals([first.length, gone.length, third.length], [4, 2, 4]);
  // No entries (nil, or an empty array): read at once, or holding no reference once read;
  // without chunks, entries are pairs.
  r.push(bytes("*-1\r\n*0\r\n"));
  assertEquals(r.take(chunks), null);
  assertEquals((r.take(chunks) as CapturedReply).read(), []);
  assertEquals(chunk.refs, 1);
  r.push(bytes(wire));
  assertEquals((r.take() as [string, unknown[][]][])[0][1][0].length, 2);
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
