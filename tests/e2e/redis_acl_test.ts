/**
 * End-to-end tests of Redis ACL authentication (README: Configuration and Security) against a real
 * redis-server whose default user is disabled and whose only user is `svc`: with
 * `REDIS_USER`/`REDIS_PW` the service authenticates as that user, becomes ready, consumes and
 * publishes; with a wrong password it exits 1 saying why. In both cases, with
 * `LOG_FORMAT=json`, every stdout line is a JSON object and neither the right nor the wrong
 * password appears anywhere in the output.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { jsonLines, runService, startService } from "../support/service.ts";
import { waitFor } from "../support/wait.ts";

const USER = "svc";
const PASSWORD = "s3cr3t-pw";
const WRONG_PASSWORD = "wr0ng-pw-value";
const STREAM = "acl-stream";

/** A Redis whose default user is off and whose user `svc` may do everything. */
function startAclRedis(): Promise<RedisServer> {
  return startRedis({
    args: ["--user", USER, "on", `>${PASSWORD}`, "~*", "&*", "+@all", "--user", "default", "off"],
  });
}

/** Every non-empty line of `stdout` is a JSON object; returns them. */
function assertAllJson(stdout: string | readonly string[]): Record<string, unknown>[] {
  const lines = (typeof stdout === "string" ? stdout.split("\n") : [...stdout])
    .filter((l) => l.trim() !== "");
  assert(lines.length > 0, "no output on stdout");
  for (const line of lines) {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new Error(`stdout line is not JSON: ${line}`);
    }
    assert(
      value !== null && typeof value === "object" && !Array.isArray(value),
      `stdout line is not a JSON object: ${line}`,
    );
  }
  return jsonLines(lines);
}

function assertNoSecret(output: string, secrets: string[]): void {
  for (const secret of secrets) {
    assert(!output.includes(secret), `the secret "${secret}" appears in the output`);
  }
}

Deno.test("service authenticates as REDIS_USER with REDIS_PW, consumes, and never prints the password", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startAclRedis());
  const client = await redis.client({ username: USER, password: PASSWORD });
  // The server really refuses the default user.
  const refused = await assertRejects(() => redis.client({ reconnect: false }));
  assertMatch(refused.message, /NOAUTH/);

  const svc = cleanup.use(
    await startService({
      env: {
        ...redis.env(),
        SERVICE_NAME: "acl-svc",
        STREAM,
        REDIS_USER: USER,
        REDIS_PW: PASSWORD,
        LOG_FORMAT: "json",
      },
    }),
  );

  // Its connections (commands, blocking reads, commands it encodes itself) are authenticated as
  // `svc`.
  const clients = String(await client.sendCommand(["CLIENT", "LIST"])).split("\n")
    .filter((l) => / name=acl-svc:/.test(l));
  assertEquals(clients.length, 3, `service connections in CLIENT LIST:\n${clients.join("\n")}`);
  for (const line of clients) assertMatch(line, / user=svc /);

  const id = await client.xAdd(STREAM, "*", {
    event: "acl.check",
    aggregateId: "a-1",
    payload: "{}",
    headers: JSON.stringify({ correlationId: "acl-corr" }),
  });
  await waitFor(
    () => jsonLines(svc.lines).some((l) => l.message === `Received acl.check ${id}`),
    { message: `the service to log the handling of ${id}` },
  );
  const res = await svc.request("/trigger-test-event", { method: "POST" });
  assertEquals(res.status, 200, res.text);
  const published = (res.json as { id: string }).id;
  assertEquals((await client.xRange(STREAM, published, published)).length, 1);

  assertEquals((await svc.stop()).code, 0);
  assertAllJson(svc.lines);
  assertNoSecret(svc.output(), [PASSWORD]);
});

Deno.test("service exits 1 on a wrong REDIS_PW, saying why, printing neither password", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startAclRedis());

  const run = await runService({
    ...redis.env(),
    SERVICE_NAME: "acl-wrong",
    STREAM,
    REDIS_USER: USER,
    REDIS_PW: WRONG_PASSWORD,
    LOG_FORMAT: "json",
    MAX_RETRY_ATTEMPTS: "1",
    CONNECTION_TIMEOUT: "3000",
  });
  assertEquals(run.code, 1, `exit code\n${run.stdout}\n${run.stderr}`);
  const lines = assertAllJson(run.stdout);
  const failed = lines.find((l) => String(l.message).startsWith("Connection attempt 1/1 failed"));
  assert(failed, `no failed attempt logged:\n${run.stdout}`);
  assertEquals(failed.level, "ERROR");
  assertMatch(String(failed.message), /WRONGPASS/);
  assert(lines.some((l) => String(l.message).startsWith("Giving up on Redis")));
  assertNoSecret(run.stdout + run.stderr, [PASSWORD, WRONG_PASSWORD]);
});
