/**
 * `commandKey` (src/redis/cluster_link.ts): the key a raw command is routed by on Redis Cluster.
 *
 * @module
 */
import { commandKey } from "../../src/redis/cluster_link.ts";
import { assertEquals } from "../support/assert.ts";

Deno.test("commandKey: the first key of each command the service sends", () => {
  const cases: [string[], string | undefined][] = [
    [["XADD", "{o}", "*", "f", "v"], "{o}"],
    [["XACK", "{o}", "g", "1-0"], "{o}"],
    [["XPENDING", "{o}", "g", "-", "+", "10", "c"], "{o}"],
    [["GET", "{o}:dedup:g:k"], "{o}:dedup:g:k"],
    [["XINFO", "GROUPS", "{o}"], "{o}"],
    [["XGROUP", "CREATE", "{o}", "g", "0", "MKSTREAM"], "{o}"],
    [["EVALSHA", "abc", "2", "{o}", "{o}:dlq", "x"], "{o}"],
    [["EVALSHA", "abc", "0", "x"], undefined],
    [["XREADGROUP", "GROUP", "g", "c", "COUNT", "5", "STREAMS", "{o}", ">"], "{o}"],
    [["XREADGROUP", "GROUP", "g", "c", "COUNT", "5", "BLOCK", "10", "STREAMS", "{o}", ">"], "{o}"],
    // A group or consumer named like a keyword is not the STREAMS keyword.
    [["XREADGROUP", "GROUP", "streams", "STREAMS", "NOACK", "STREAMS", "{o}", ">"], "{o}"],
    [["XREAD", "COUNT", "1", "STREAMS", "{o}", "0"], "{o}"],
    [["SCRIPT", "LOAD", "return 1"], undefined],
    [["PING"], undefined],
    [["CLIENT", "UNBLOCK", "7"], undefined],
  ];
  for (const [args, key] of cases) assertEquals(commandKey(args), key, args.join(" "));
});
