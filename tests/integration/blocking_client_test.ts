/**
 * Integration tests of the blocking reader's own client (`blocking_client.ts`) against a real
 * redis-server: it reads what node-redis reads (ASCII, not ASCII, bytes that are not UTF-8, an
 * entry deleted while pending), authenticates as a user and names itself, answers commands in
 * the order sent, and turns a killed server into a connection error its listeners hear of.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { ErrorReply } from "npm:@redis/client@^5.12.1";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { testConfig } from "../support/in_process_consumer.ts";
import { BlockingClient } from "../../src/redis/blocking_client.ts";
import { classifyError } from "../../src/redis/errors.ts";
import type { RedisServer } from "../support/redis_server.ts";

async function connected(
  cleanup: Cleanup,
  redis: RedisServer,
  env: Record<string, string> = {},
): Promise<BlockingClient> {
  const config = testConfig(redis, env);
  const client = new BlockingClient(config.redis, { host: "127.0.0.1", port: redis.port }, "t:blk");
  cleanup.add(() => client.destroy());
  await client.connect();
  return client;
}

Deno.test("BlockingClient reads entries exactly as node-redis does, whatever their bytes", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const admin = await redis.client();
  await admin.sendCommand(["XGROUP", "CREATE", "s", "g", "0", "MKSTREAM"]);
  await admin.sendCommand(["XADD", "s", "*", "event", "a", "payload", '{"n":1}', "x", ""]);
  await admin.sendCommand(["XADD", "s", "*", "event", "ünïcode ✓", "emoji", "\u{1F600}"]);
  await admin.sendCommand([
    "XADD",
    "s",
    "*",
    "event",
    "bytes",
    "raw",
    Buffer.from([0x61, 0xff, 0xfe, 0x62]) as unknown as string, // not UTF-8
  ]);
  const gone = String(await admin.sendCommand(["XADD", "s", "*", "event", "deleted"]));
  const client = await connected(cleanup, redis);
  const read = (consumer: string, id: string) => [
    "XREADGROUP",
    "GROUP",
    "g",
    consumer,
    "COUNT",
    "10",
    "STREAMS",
    "s",
    id,
  ];
  const mine = await client.sendCommand(read("mine", ">"), { timeout: 2000 });
  await admin.sendCommand(["XDEL", "s", gone]);
  const pending = await client.sendCommand(read("mine", "0"), { timeout: 2000 });
  // node-redis reading the same: the other consumer's share, and the pending ones again.
  const theirs = await admin.sendCommand(read("theirs", "0"));
  assertEquals(await admin.sendCommand(read("mine", "0")), pending);
  const entries = (mine as [string, [string, string[]][]][])[0][1];
  assertEquals(entries.length, 4);
  assertEquals(entries[0][1], ["event", "a", "payload", '{"n":1}', "x", ""]);
  assertEquals(entries[1][1], ["event", "ünïcode ✓", "emoji", "\u{1F600}"]);
  assertEquals(entries[2][1], ["event", "bytes", "raw", "a\uFFFD\uFFFDb"]);
  assertEquals(theirs, [["s", []]], "nothing pending for another consumer");
  const again = (pending as [string, [string, string[] | null][]][])[0][1];
  assertEquals(again.map(([id]) => id), entries.map(([id]) => id));
  assertEquals(again[3][1], null, "a deleted entry's fields are nil");
});

Deno.test("BlockingClient authenticates as REDIS_USER, names itself, and answers in order", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const admin = await redis.client();
  await admin.sendCommand(["ACL", "SETUSER", "svc", "on", ">pw", "~*", "&*", "+@all"]);
  const client = await connected(cleanup, redis, { REDIS_USER: "svc", REDIS_PW: "pw" });
  assertEquals(await client.sendCommand(["ACL", "WHOAMI"]), "svc");
  assertStringIncludes(String(await admin.sendCommand(["CLIENT", "LIST"])), "name=t:blk");
  const replies = await Promise.all(
    ["1", "2", "3"].map((n) => client.sendCommand(["ECHO", n])),
  );
  assertEquals(replies, ["1", "2", "3"]);
  const err = await assertRejects(() => client.sendCommand(["XLEN"]), ErrorReply);
  assertEquals(classifyError(err), "reply", "an error reply leaves the connection up");
  assert(client.isReady);
  const wrong = await assertRejects(
    () => connected(cleanup, redis, { REDIS_USER: "svc", REDIS_PW: "nope" }),
    ErrorReply,
  );
  assertStringIncludes(wrong.message, "WRONGPASS");
});

Deno.test("BlockingClient turns a killed server into a connection error and tells its listeners", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const admin = await redis.client();
  await admin.sendCommand(["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]);
  const client = await connected(cleanup, redis);
  const heard: unknown[] = [];
  client.on("error", (err) => heard.push(err));
  // Its outcome is taken at once: it rejects while the test waits for the kill.
  const blocked = client.sendCommand(
    ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "10000", "STREAMS", "s", ">"],
    { timeout: 20_000 },
  ).then(() => new Error("answered"), (e: unknown) => e as Error);
  await redis.kill();
  const err = await blocked;
  assertEquals(err.name, "SocketClosedUnexpectedlyError");
  assertEquals(classifyError(err), "connection");
  assertEquals(heard, [err]);
  assertEquals([client.isOpen, client.isReady], [false, false]);
  const closed = await assertRejects(() => client.sendCommand(["PING"]), Error);
  assertEquals(classifyError(closed), "connection");
});
