/**
 * `commandKey` (src/redis/cluster_link.ts): the key a raw command is routed by on Redis Cluster;
 * `replicaCounts` (src/redis/cluster.ts): the replicas of each master, from `CLUSTER NODES`.
 *
 * @module
 */
import { replicaCounts } from "../../src/redis/cluster_replicas.ts";
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

Deno.test("replicaCounts: replicas per master address from CLUSTER NODES, failed ones too", () => {
  const nodes = [
    "m1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460",
    "m2 127.0.0.1:7001@17001,host-b master - 0 1 2 connected 5461-10922",
    "m3 127.0.0.1:7002@17002 master - 0 1 3 connected 10923-16383",
    "r1 127.0.0.1:7003@17003 slave m1 0 1 1 connected",
    "r2 127.0.0.1:7004@17004 slave,fail m2 0 1 2 disconnected",
    "r3 127.0.0.1:7005@17005 slave m1 0 1 1 connected",
    "r4 :0@0 slave,noaddr m3 0 1 3 disconnected",
    "r5 127.0.0.1:7007@17007 handshake - 0 0 0 connected",
    "m0 127.0.0.1:7006@17006 master,fail - 0 1 0 disconnected",
    "",
  ].join("\n");
  assertEquals(
    replicaCounts(nodes),
    new Map([
      ["127.0.0.1:7000", 2],
      ["127.0.0.1:7001", 1],
      ["127.0.0.1:7002", 0],
      ["127.0.0.1:7006", 0],
    ]),
  );
  assertEquals(replicaCounts(""), new Map());
});
