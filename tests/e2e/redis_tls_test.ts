/**
 * End-to-end tests of Redis over TLS (README: Configuration and Security): certificates are made
 * with `openssl` at test time by `tests/support/tls.ts` (a CA, a server certificate for
 * 127.0.0.1/localhost, a client certificate, and an unrelated second CA); a real redis-server
 * listens with TLS on one port (its plaintext port serves only the test's own client and
 * readiness probe) and the service is pointed at the TLS port. Covered: server-verified TLS
 * (ready, consumes, publishes), mutual TLS with and without a client certificate, and a server
 * the configured CA did not sign.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { runService, type ServiceProcess, startService } from "../support/service.ts";
import { makePki, type Pki, redisTlsArgs } from "../support/tls.ts";
import { freePort } from "../support/wait.ts";

/**
 * A redis-server with a plaintext port (for the readiness probe and the test's own client) and
 * a TLS port (for the service). Retries with another TLS port if the chosen one was taken.
 */
async function startTlsRedis(
  pki: Pki,
  authClients: "yes" | "no",
): Promise<{ redis: RedisServer; tlsPort: number }> {
  for (let attempt = 1;; attempt++) {
    const tlsPort = freePort();
    try {
      const redis = await startRedis({
        args: [
          "--tls-port",
          String(tlsPort),
          ...redisTlsArgs(pki, authClients),
        ],
      });
      return { redis, tlsPort };
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

function tlsEnv(tlsPort: number, extra: Record<string, string>): Record<string, string> {
  return {
    REDIS_HOST: "127.0.0.1",
    REDIS_PORT: String(tlsPort),
    SERVICE_NAME: "tls-svc",
    STREAM: "tls-stream",
    REDIS_TLS_ENABLED: "true",
    ...extra,
  };
}

/** Env of a service that must give up quickly. */
const FAIL_FAST = { MAX_RETRY_ATTEMPTS: "1", CONNECTION_TIMEOUT: "3000" };

/** The service consumes an XADDed entry and publishes one through the trigger route. */
async function assertConsumesAndPublishes(svc: ServiceProcess, redis: RedisServer) {
  const client = await redis.client();
  const id = await client.xAdd("tls-stream", "*", {
    event: "tls.check",
    aggregateId: "tls-1",
    payload: "{}",
    headers: JSON.stringify({ correlationId: "tls-corr" }),
  });
  await svc.waitForLine(new RegExp(`Received tls\\.check ${id}`));
  const res = await svc.request("/trigger-test-event", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ event: "tls.trigger" }),
  });
  assertEquals(res.status, 200, res.text);
  const published = (res.json as { id: string }).id;
  const entries = await client.xRange("tls-stream", published, published);
  assertEquals(entries[0]?.message.event, "tls.trigger");
  await svc.waitForLine(new RegExp(`Received tls\\.trigger ${published}`));
}

/** No key material (a PEM private key) shows in the output. */
function assertNoKeyMaterial(output: string): void {
  assert(!output.includes("PRIVATE KEY"), "key material in the output");
}

Deno.test("service connects over TLS with REDIS_TLS_CA, consumes and publishes", async () => {
  await using cleanup = new Cleanup();
  const pki = await makePki();
  cleanup.add(() => Deno.remove(pki.dir, { recursive: true }));
  const { redis, tlsPort } = await startTlsRedis(pki, "no");
  cleanup.use(redis);

  const svc = cleanup.use(
    await startService({ env: tlsEnv(tlsPort, { REDIS_TLS_CA: pki.caCert }) }),
  );
  await svc.waitForLine(`Connected to Redis at 127.0.0.1:${tlsPort}`);
  await assertConsumesAndPublishes(svc, redis);
  assertEquals((await svc.stop()).code, 0);
  assertNoKeyMaterial(svc.output());
});

Deno.test("service with mutual TLS connects with a client certificate and exits 1 without", async () => {
  await using cleanup = new Cleanup();
  const pki = await makePki();
  cleanup.add(() => Deno.remove(pki.dir, { recursive: true }));
  const { redis, tlsPort } = await startTlsRedis(pki, "yes");
  cleanup.use(redis);

  const [svc, without] = await Promise.all([
    startService({
      env: tlsEnv(tlsPort, {
        REDIS_TLS_CA: pki.caCert,
        REDIS_TLS_CERT: pki.clientCert,
        REDIS_TLS_KEY: pki.clientKey,
      }),
    }),
    runService({
      ...tlsEnv(tlsPort, { REDIS_TLS_CA: pki.caCert, SERVICE_NAME: "tls-nocert" }),
      ...FAIL_FAST,
    }),
  ]);
  cleanup.use(svc);

  assertEquals(without.code, 1, `exit code\n${without.stdout}\n${without.stderr}`);
  assert(!/\bReady\b/.test(without.stdout), "the service without a certificate became ready");
  // The cause must be visible. Known race (reported, not fixed): with TLS 1.3 the server's
  // "certificate required" alert comes right after the handshake; under Deno it is sometimes
  // emitted before node-redis attaches its socket error listener, and then surfaces as an
  // uncaught error on stderr instead of the logged "Connection attempt 1/1 failed" line.
  assertMatch(without.stdout + without.stderr, /certificate/i);

  await assertConsumesAndPublishes(svc, redis);
  assertEquals((await svc.stop()).code, 0);
  assertNoKeyMaterial(svc.output() + without.stdout + without.stderr);
});

Deno.test("service exits 1, naming the certificate problem, when another CA signed the server", async () => {
  await using cleanup = new Cleanup();
  const pki = await makePki();
  cleanup.add(() => Deno.remove(pki.dir, { recursive: true }));
  const { redis, tlsPort } = await startTlsRedis(pki, "no");
  cleanup.use(redis);

  const run = await runService({
    ...tlsEnv(tlsPort, { REDIS_TLS_CA: pki.otherCaCert }),
    ...FAIL_FAST,
  });
  assertEquals(run.code, 1, `exit code\n${run.stdout}\n${run.stderr}`);
  // The operator must see why: the verification error, not a follow-up "client is closed".
  const failed = run.stdout.split("\n").find((l) => l.includes("Connection attempt 1/1 failed"));
  assert(failed, `no failed attempt logged:\n${run.stdout}`);
  assertMatch(failed, /certificate/i);
  assertMatch(run.stdout, /Giving up on Redis/);
  assertNoKeyMaterial(run.stdout + run.stderr);
});
