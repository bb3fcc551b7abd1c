/**
 * Integration tests of settle calls sent as bytes (`settle_command.ts`, `execBytes`): entries
 * read with their bytes (`readGroup` with `RawChunks`) and forwarded as `#` are copied byte for
 * byte as the script copies them from an XRANGE (`+`): headers replaced when last, appended when
 * missing, `{}`, UTF-8 kept; `#`, `+` and `=` mixed in one group; a forward no longer pending is
 * not copied; and chunks are reused only once nothing refers to them.
 *
 * @module
 */

import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { createGroup, pendingCount } from "../support/streams.ts";
import { testConfig } from "../support/in_process_consumer.ts";
import { ConnectionManager } from "../../src/redis/connection.ts";
import { letGo, RawChunks } from "../../src/redis/raw_chunks.ts";
import { CapturedReply } from "../../src/redis/resp.ts";
import { CommandWriter } from "../../src/redis/command_writer.ts";
import { forwardHeaders, sourceHeadersPrefix, type StreamEvent } from "../../src/stream/entry.ts";
import type { RawEntry } from "../../src/stream/consumer/raw.ts";
import { encodeSettle, ForwardCopy, packRawSpan } from "../../src/stream/consumer/settle_codec.ts";
import { writeSettleCommand } from "../../src/stream/consumer/settle_command.ts";
import { SETTLE } from "../../src/stream/consumer/settle_script.ts";

const HEAD = ["event", "fwd.bytes", "aggregateId", "a", "payload", '{"k":"v"}'];

/** A Redis, a connection to it, and `t` with group `g`. */
async function setUp(cleanup: Cleanup) {
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const connection = new ConnectionManager({ redis: testConfig(redis).redis, clientName: "t" });
  cleanup.add(() => connection.close());
  await connection.connect();
  await createGroup(client, "t", "g");
  return { client, connection };
}

/** XADDs `flats` to `t` and reads them as "manual" with their bytes. */
async function addAndRead(
  client: Awaited<ReturnType<typeof setUp>>["client"],
  connection: ConnectionManager,
  chunks: RawChunks,
  flats: readonly string[][],
): Promise<RawEntry[]> {
  for (const flat of flats) await client.sendCommand(["XADD", "t", "*", ...flat]);
  const head = ["GROUP", "g", "manual", "COUNT", String(flats.length)];
  const read = await connection.readGroup(["t"], [">"], head, 100, chunks);
  assert(read instanceof CapturedReply, "kept as bytes until read");
  return (read.read() as [string, RawEntry[]][])[0][1];
}

/** A plain forward of `e` to `out`, with its bytes (as the dispatcher keeps them). */
function rawForward(e: RawEntry) {
  const flat = e[1]!;
  return {
    id: e[0],
    copy: new ForwardCopy(["out"]),
    rawChunk: e[2],
    rawSpan: packRawSpan(e[3]!, flat.length, lastHeaders(flat) < 0),
  };
}

/** The index of the last `headers` field name of `flat`, or -1. */
function lastHeaders(flat: readonly string[]): number {
  for (let i = flat.length - 2; i >= 0; i -= 2) if (flat[i] === "headers") return i;
  return -1;
}

/** Runs SETTLE for `ops` as bytes, as the settler does. */
async function settleBytes(
  connection: ConnectionManager,
  ops: Parameters<typeof encodeSettle>[1],
): Promise<unknown> {
  const call = encodeSettle({
    stream: "t",
    checkpointKey: "t:checkpoint:g",
    group: "g",
    consumer: "manual",
    now: new Date().toISOString(),
    dedupTtlS: 60,
    bytes: true,
  }, ops);
  const sha = await connection.exec((c) => SETTLE.load(c));
  const bytes = writeSettleCommand(new CommandWriter(), sha, call, sourceHeadersPrefix("t"));
  return await connection.execBytes((c) => c.sendBytes(bytes));
}

/** The copy the script makes of `flat` (entry `id` of `t`): its last headers extended. */
function expectedCopy(flat: readonly string[], id: string): string[] {
  const last = lastHeaders(flat);
  const own = last < 0 ? {} : JSON.parse(flat[last + 1]);
  const headers = forwardHeaders({ stream: "t", id, headers: own } as StreamEvent);
  if (last < 0) return [...flat, "headers", headers];
  const copy = [...flat];
  copy[last + 1] = headers;
  return copy;
}

/** The fields of every entry of `stream`, in order. */
async function copies(
  client: Awaited<ReturnType<typeof setUp>>["client"],
  stream: string,
): Promise<string[][]> {
  const rows = await client.sendCommand(["XRANGE", stream, "-", "+"]) as [string, string[]][];
  return rows.map(([, fields]) => fields);
}

Deno.test("a settle sent as bytes copies forwards from the bytes they were read as, byte for byte", async () => {
  await using cleanup = new Cleanup();
  const { client, connection } = await setUp(cleanup);
  const chunks = new RawChunks();
  const flats = [
    [...HEAD, "headers", "{}"],
    [...HEAD, "headers", '{"correlationId":"c-1","traceparent":"00-abc"}'],
    [...HEAD],
    [...HEAD, "headers", '{"name":"zoë ✓ 😀"}'],
    ["event", "fwd.bytes", "payload", '{"text":"naïve ☕"}', "headers", '{"x":"y"}'],
    // Headers not last: replaced where they are; twice: the last one, as the script does.
    [...HEAD, "headers", '{"a":"b"}', "mimeType", "application/json"],
    [...HEAD, "headers", '{"first":"x"}', "n", "1", "headers", '{"k":"v"}', "after", "kept"],
    // A value spelled "headers" is not a headers field.
    ["event", "headers", "payload", "{}"],
  ];
  const read = await addAndRead(client, connection, chunks, flats);
  assertEquals(read.map((e) => e[1]), flats);
  // The reply's own reference, and none yet for the entries.
  assertEquals(read[0][2]!.refs, 1);
  const ops = read.map(rawForward);
  assertEquals(await settleBytes(connection, ops), [...ops.map(() => 1), 1]);
  assertEquals(await copies(client, "out"), flats.map((f, i) => expectedCopy(f, read[i][0])));
  assertEquals(await pendingCount(client, "t", "g"), 0);
  assertEquals(await client.hGet("t:checkpoint:g", "manual"), read[read.length - 1][0]);
  // Again (a retry after a lost reply): nothing pending, nothing copied twice.
  assertEquals(await settleBytes(connection, ops), [...ops.map(() => 0), 1]);
  assertEquals((await copies(client, "out")).length, flats.length);
});

Deno.test("a settle sent as bytes mixes forwards with bytes, made headers and given headers", async () => {
  await using cleanup = new Cleanup();
  const { client, connection } = await setUp(cleanup);
  const chunks = new RawChunks();
  const flats = Array.from({ length: 6 }, (_, i) => [...HEAD, "n", String(i), "headers", "{}"]);
  const read = await addAndRead(client, connection, chunks, flats);
  const ops = read.map((e, i) =>
    i % 3 === 0
      ? rawForward(e)
      : i % 3 === 1
      ? { id: e[0], copy: new ForwardCopy(["out"]) }
      : { id: e[0], copy: new ForwardCopy(["out"], '{"given":"yes"}') }
  );
  // One acknowledged elsewhere already: not copied, whichever its mode.
  await client.sendCommand(["XACK", "t", "g", read[3][0]]);
  assertEquals(await settleBytes(connection, ops), [1, 1, 1, 0, 1, 1, 1]);
  const expected = flats.map((f, i) =>
    i % 3 === 2 ? [...f.slice(0, -1), '{"given":"yes"}'] : expectedCopy(f, read[i][0])
  ).filter((_, i) => i !== 3);
  assertEquals(await copies(client, "out"), expected);
  assertEquals(await pendingCount(client, "t", "g"), 0);
});

Deno.test("RawChunks reuses a chunk only once nothing refers to it, and reads without beyond its limit", () => {
  const chunks = new RawChunks(16, 2);
  const src = new TextEncoder().encode("0123456789abcdef");
  const [a, at] = chunks.copy(src, 0, 10)!;
  assertEquals([at, a.refs, new TextDecoder().decode(a.bytes.subarray(0, 10))], [
    0,
    1,
    "0123456789",
  ]);
  // No room left in `a`: a second chunk.
  const [b] = chunks.copy(src, 0, 10)!;
  assert(a !== b);
  // Both referred to, and no more chunks allowed: read without.
  assertEquals(chunks.copy(src, 0, 10), undefined);
  // Larger than a chunk: read without.
  assertEquals(chunks.copy(new Uint8Array(17), 0, 17), undefined);
  letGo(a);
  const [c, at2] = chunks.copy(src, 6, 16)!;
  assertEquals([c === a, at2, c.refs], [true, 0, 1]);
  assertEquals(new TextDecoder().decode(c.bytes.subarray(0, 10)), "6789abcdef");
  assertEquals(chunks.size, 2);
});
