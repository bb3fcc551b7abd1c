/**
 * Unit tests of the cluster and partition variables of src/config.ts (README "Redis Cluster and
 * partitioned streams"): REDIS_CLUSTER_NODES instead of REDIS_HOST/REDIS_PORT and never with
 * Sentinel, STREAM_PARTITIONS and PARTITION_LEASE_MS bounds, braces in partitioned stream names,
 * hash tags of consumed streams in cluster mode (the message suggests `{<stream>}`), and a
 * DLQ_STREAM outside the source's slot. No Redis, no network.
 */
import { type Config, ConfigError, loadConfig } from "../../src/config.ts";
import { slotOf } from "../../src/stream/keys.ts";
import {
  assert,
  assertEquals,
  assertNotEquals,
  assertStringIncludes,
  assertThrows,
} from "../support/assert.ts";

const SINGLE = { REDIS_HOST: "localhost", REDIS_PORT: "6380", SERVICE_NAME: "orders-svc" };
const CLUSTER = {
  REDIS_CLUSTER_NODES: "10.0.0.1:7000, redis-1.local:7001,[::1]:7002",
  SERVICE_NAME: "orders-svc",
  STREAM: "{orders}",
};

function load(env: Record<string, string | undefined>): Config {
  return loadConfig(env);
}

/** Expects exactly one problem, with `variable`; returns its message. */
function onlyProblem(env: Record<string, string | undefined>, variable: string): string {
  const err = assertThrows(() => loadConfig(env), ConfigError);
  assertEquals(err.problems.map((p) => p.variable), [variable], JSON.stringify(env));
  assertStringIncludes(err.lines()[0], `${variable}=`);
  return err.problems[0].message;
}

Deno.test("REDIS_CLUSTER_NODES replaces REDIS_HOST/REDIS_PORT and lists the seed nodes", () => {
  const config = load(CLUSTER);
  assertEquals(config.redis.cluster, {
    nodes: [
      { host: "10.0.0.1", port: 7000 },
      { host: "redis-1.local", port: 7001 },
      { host: "::1", port: 7002 },
    ],
  });
  assertEquals(config.redis.sentinel, undefined);
  assertEquals(config.stream.streams, ["{orders}"]);
  // Without it nothing changes.
  assertEquals(load(SINGLE).redis.cluster, undefined);
});

Deno.test("REDIS_CLUSTER_NODES must be host:port entries", () => {
  for (const bad of ["10.0.0.1", "10.0.0.1:0", "a:1,b", "a:70000", " , "]) {
    onlyProblem({ ...CLUSTER, REDIS_CLUSTER_NODES: bad }, "REDIS_CLUSTER_NODES");
  }
});

Deno.test("REDIS_CLUSTER_NODES together with REDIS_SENTINELS is an error", () => {
  const message = onlyProblem(
    { ...CLUSTER, REDIS_SENTINELS: "s1:26379", REDIS_SENTINEL_MASTER: "mymaster" },
    "REDIS_CLUSTER_NODES",
  );
  assertStringIncludes(message, "REDIS_SENTINELS");
});

Deno.test("STREAM_PARTITIONS: default 1, from 1 to 1024", () => {
  assertEquals(load(SINGLE).stream.partitions, 1);
  assertEquals(load({ ...SINGLE, STREAM_PARTITIONS: "8" }).stream.partitions, 8);
  assertEquals(load({ ...SINGLE, STREAM_PARTITIONS: "1024" }).stream.partitions, 1024);
  for (const bad of ["0", "1025", "-1", "2.5", "many"]) {
    onlyProblem({ ...SINGLE, STREAM_PARTITIONS: bad }, "STREAM_PARTITIONS");
  }
});

Deno.test("PARTITION_LEASE_MS: default 10000, from 1000 to 600000", () => {
  assertEquals(load(SINGLE).stream.partitionLeaseMs, 10_000);
  assertEquals(load({ ...SINGLE, PARTITION_LEASE_MS: "1000" }).stream.partitionLeaseMs, 1000);
  for (const bad of ["999", "600001", "0", "ten"]) {
    onlyProblem({ ...SINGLE, PARTITION_LEASE_MS: bad }, "PARTITION_LEASE_MS");
  }
});

Deno.test("with STREAM_PARTITIONS above 1 a stream name with braces is an error", () => {
  for (const name of ["{orders}", "orders}", "a,{b}x"]) {
    const message = onlyProblem(
      { ...SINGLE, STREAM: name, STREAM_PARTITIONS: "4" },
      "STREAM",
    );
    assertStringIncludes(message, "braces");
  }
  // One partition: braces are fine (a plain stream, tagged for a cluster).
  assertEquals(load({ ...SINGLE, STREAM: "{orders}" }).stream.streams, ["{orders}"]);
});

Deno.test("in cluster mode an untagged stream is an error that suggests {<stream>}", () => {
  const message = onlyProblem({ ...CLUSTER, STREAM: "{orders},payments" }, "STREAM");
  assertStringIncludes(message, '"{payments}"');
  // An empty tag ("{}") does not count: Redis hashes the whole key then.
  assertStringIncludes(onlyProblem({ ...CLUSTER, STREAM: "{}x" }, "STREAM"), '"{{}x}"');
  // Tags anywhere in the name are fine.
  assertEquals(load({ ...CLUSTER, STREAM: "events.{orders}" }).stream.streams, [
    "events.{orders}",
  ]);
  // Outside cluster mode no tag is needed.
  assertEquals(load({ ...SINGLE, STREAM: "payments" }).stream.streams, ["payments"]);
});

Deno.test("in cluster mode with partitions an untagged stream is fine: {S:i} carry the tag", () => {
  const config = load({ ...CLUSTER, STREAM: "orders,payments", STREAM_PARTITIONS: "8" });
  assertEquals(config.stream.streams, ["orders", "payments"]);
  assertEquals(config.stream.partitions, 8);
});

Deno.test("in cluster mode a DLQ_STREAM outside the source's slot is an error", () => {
  assertNotEquals(slotOf("dead-letters"), slotOf("{orders}"));
  const message = onlyProblem({ ...CLUSTER, DLQ_STREAM: "dead-letters" }, "DLQ_STREAM");
  assertStringIncludes(message, `slot ${slotOf("dead-letters")}`);
  assertStringIncludes(message, '"{orders}:dlq"');
  // Same tag, same slot: fine.
  assertEquals(load({ ...CLUSTER, DLQ_STREAM: "{orders}.dlq" }).stream.dlqStream, "{orders}.dlq");
  // Two streams with different tags cannot share one dead-letter stream.
  onlyProblem(
    { ...CLUSTER, STREAM: "{orders},{payments}", DLQ_STREAM: "{orders}.dlq" },
    "DLQ_STREAM",
  );
  // With partitions, one DLQ_STREAM cannot share the slots of every partition.
  const partitioned = { ...CLUSTER, STREAM: "orders", STREAM_PARTITIONS: "4" };
  assertStringIncludes(
    onlyProblem({ ...partitioned, DLQ_STREAM: "{orders:0}:dlq" }, "DLQ_STREAM"),
    "leave DLQ_STREAM unset",
  );
  // Outside cluster mode any DLQ_STREAM goes.
  assertEquals(load({ ...SINGLE, DLQ_STREAM: "dead-letters" }).stream.dlqStream, "dead-letters");
});

Deno.test("cluster problems are reported with the other problems at once", () => {
  const err = assertThrows(
    () =>
      loadConfig({
        REDIS_CLUSTER_NODES: "a:1",
        SERVICE_NAME: "svc",
        STREAM: "untagged",
        STREAM_PARTITIONS: "0",
        BATCH_SIZE: "x",
      }),
    ConfigError,
  );
  const variables = err.problems.map((p) => p.variable).sort();
  assertEquals(variables, ["BATCH_SIZE", "STREAM", "STREAM_PARTITIONS"]);
  assert(!variables.includes("REDIS_HOST"));
});
