/**
 * `main.ts healthcheck`, the probe the Docker image's HEALTHCHECK runs (the
 * distroless image has no shell or curl): exit 0 when /health/ready on
 * SERVICE_PORT answers 200, 1 when it answers 503 or nothing listens.
 */
import { assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { REPO_ROOT, startService } from "../support/service.ts";
import { freePort, waitFor } from "../support/wait.ts";

async function probe(port: number): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", `${REPO_ROOT}/main.ts`, "healthcheck"],
    env: { SERVICE_PORT: String(port), NO_COLOR: "1" },
    stdout: "null",
    stderr: "null",
  }).output();
  return out.code;
}

Deno.test("main.ts healthcheck exits 0 when ready, 1 when not ready or not listening", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const svc = cleanup.use(
    await startService({ env: { ...redis.env(), SERVICE_NAME: "hc", CONNECTION_TIMEOUT: "500" } }),
  );
  assertEquals(await probe(svc.port), 0, "ready");
  await redis.kill();
  // Not ready while Redis is away: the probe must say so.
  await waitFor(async () => await probe(svc.port) === 1, {
    timeoutMs: 20_000,
    message: "healthcheck exits 1 while Redis is down",
  });
  assertEquals(await probe(freePort()), 1, "nothing listening");
});
