/**
 * Configuration errors of Redis Cluster mode, on the spawned service (README "Redis Cluster"):
 * a consumed stream without a hash tag and a `DLQ_STREAM` in another hash slot than its source
 * exit 78 before anything listens or connects, with one problem line that names the variable and
 * suggests the tagged name (`{<stream>}`). The seed nodes are never contacted (the ports are free),
 * so no cluster is started here.
 *
 * @module
 */

import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { runService } from "../support/service.ts";
import { freePort } from "../support/wait.ts";

/** A cluster-mode configuration, `overrides` on top; one connection attempt, short timeouts. */
function clusterEnv(overrides: Record<string, string>): Record<string, string> {
  return {
    REDIS_CLUSTER_NODES: `127.0.0.1:${freePort()},127.0.0.1:${freePort()}`,
    SERVICE_NAME: "cluster-config-e2e",
    MAX_RETRY_ATTEMPTS: "1",
    CONNECTION_TIMEOUT: "500",
    ...overrides,
  };
}

/** The problem lines under "Invalid configuration:" on stderr. */
function problemLines(stderr: string): string[] {
  const lines = stderr.split("\n");
  const start = lines.findIndex((l) => l.startsWith("Invalid configuration:"));
  assert(start >= 0, `stderr has no "Invalid configuration:" header:\n${stderr}`);
  return lines.slice(start + 1).map((l) => l.trim()).filter((l) => l.length > 0);
}

/** Runs the service with `env`, expects exit 78 with one problem line about `variable`. */
async function onlyProblem(env: Record<string, string>, variable: string): Promise<string> {
  const run = await runService(env);
  assertEquals(run.code, 78, `exit code; stderr:\n${run.stderr}\nstdout:\n${run.stdout}`);
  const problems = problemLines(run.stderr);
  assertEquals(problems.length, 1, `one problem line expected:\n${run.stderr}`);
  assert(problems[0].startsWith(`${variable}=`), `the line names ${variable}: ${problems[0]}`);
  assertEquals(run.stdout.trim(), "", "nothing is logged before the configuration is valid");
  return problems[0];
}

Deno.test("cluster mode: an untagged stream exits 78, naming STREAM and suggesting {<stream>}", async () => {
  const line = await onlyProblem(clusterEnv({ STREAM: "{tagged},orders" }), "STREAM");
  assertStringIncludes(line, '"orders"');
  assertStringIncludes(line, "{orders}");
});

Deno.test("cluster mode: a DLQ_STREAM in another slot exits 78, suggesting the stream's tag", async () => {
  const line = await onlyProblem(
    clusterEnv({ STREAM: "{orders}", DLQ_STREAM: "{other}:dlq" }),
    "DLQ_STREAM",
  );
  assertStringIncludes(line, "{orders}");
  // Partitioned: each partition is its own slot, so only the default per-partition DLQ fits.
  const parts = await onlyProblem(
    clusterEnv({ STREAM: "orders", STREAM_PARTITIONS: "4", DLQ_STREAM: "{orders}:dlq" }),
    "DLQ_STREAM",
  );
  assertStringIncludes(parts, "DLQ_STREAM unset");
});
