/**
 * `./test-health-checks.sh` against a live service (the real `main.ts` and redis-server): with
 * Redis and an API key every check passes, the admin routes included; with Redis gone the script
 * exits non-zero (the service is not ready) and, with ALLOW_NOT_READY=true, checks the 503 answers
 * instead and passes; with nothing listening it fails.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { REPO_ROOT, serviceEnvFor, startService } from "../support/service.ts";
import { freePort, waitFor } from "../support/wait.ts";

const API_KEY = "smoke-api-key-8c1d";
const HAS_CURL = await new Deno.Command("curl", { args: ["--version"], stdout: "null" }).output()
  .then((o) => o.success, () => false);

interface ScriptRun {
  code: number;
  out: string;
  passed: number;
  failed: number;
}

/** Runs the script with `env` (on top of PATH and HOME) and reads its summary line. */
async function runScript(env: Record<string, string>): Promise<ScriptRun> {
  const res = await new Deno.Command("bash", {
    args: [`${REPO_ROOT}/test-health-checks.sh`],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: "/tmp", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(res.stdout) + new TextDecoder().decode(res.stderr);
  const summary = /^(\d+) passed, (\d+) failed$/m.exec(out);
  assert(summary, `no summary line:\n${out}`);
  return { code: res.code, out, passed: Number(summary[1]), failed: Number(summary[2]) };
}

Deno.test({
  name: "test-health-checks.sh passes against a live service and fails once Redis is gone",
  ignore: !HAS_CURL,
  async fn(t) {
    await using cleanup = new Cleanup();
    const redis = cleanup.use(await startRedis());
    const svc = cleanup.use(
      await startService({
        env: serviceEnvFor(redis, "smoke-e2e", "smoke-1", {
          STREAM: "smoke-events",
          API_KEY,
          // One token per 100 s: the burst of 10 is all the script gets, however slow the
          // machine, so its 429 check cannot miss.
          RATE_LIMIT_PER_SECOND: "0.01",
        }),
      }),
    );
    const base = { BASE_URL: svc.baseUrl, API_KEY, WAIT_SECONDS: "20" };

    await t.step("with Redis: every check passes, every route exercised", async () => {
      const run = await runScript(base);
      assertEquals([run.code, run.failed], [0, 0], run.out);
      assert(run.passed >= 30, run.out);
      for (
        const route of [
          "/health/live",
          "/health/ready",
          "GET /health is",
          "/health-check",
          "/metrics",
          "/openapi.json",
          "POST /trigger-test-event publishes",
          "GET /admin/streams is 200",
          "POST /admin/dlq/replay of smoke-events (count 1) is 200",
        ]
      ) {
        assertStringIncludes(run.out, route);
      }
      assertMatch(run.out, /PASS {2}past the burst, the trigger is 429/);
    });

    // A second service, with a full rate-limit bucket, whose Redis goes away.
    const redis2 = cleanup.use(await startRedis());
    const svc2 = cleanup.use(
      await startService({
        env: serviceEnvFor(redis2, "smoke-down-e2e", "smoke-2", {
          STREAM: "smoke-events",
          API_KEY,
        }),
      }),
    );
    await redis2.kill();
    await waitFor(async () => (await svc2.request("/health/ready")).status === 503, {
      message: "readiness to turn 503 once Redis is gone",
    });
    const down = { ...base, BASE_URL: svc2.baseUrl };

    await t.step(
      "without Redis: exits non-zero, naming readiness as the failed check",
      async () => {
        const run = await runScript({ ...down, WAIT_SECONDS: "1" });
        assertEquals(run.code, 1, run.out);
        assertEquals(run.failed, 1, run.out);
        assertMatch(run.out, /^FAIL {2}GET \/health\/ready is 200 ready/m);
      },
    );

    await t.step("without Redis, ALLOW_NOT_READY=true: the 503 answers are right", async () => {
      const run = await runScript({ ...down, WAIT_SECONDS: "1", ALLOW_NOT_READY: "true" });
      assertEquals([run.code, run.failed], [0, 0], run.out);
      assertStringIncludes(run.out, "PASS  GET /admin/streams is 503 with Retry-After");
      assertStringIncludes(run.out, "PASS  POST /trigger-test-event is 503 with Retry-After");
    });
  },
});

Deno.test({
  name: "test-health-checks.sh exits non-zero when nothing answers",
  ignore: !HAS_CURL,
  async fn() {
    const run = await runScript({
      BASE_URL: `http://127.0.0.1:${freePort()}`,
      WAIT_SECONDS: "0",
      TIMEOUT_SECONDS: "2",
    });
    assertEquals(run.code, 1, run.out);
    assert(run.failed > 10, run.out);
  },
});
