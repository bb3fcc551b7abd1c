/**
 * Tests of `supervisor.ts` (and of `ServiceProcess.pause()`/`resume()` under it) with a real
 * service process and a real redis-server: a killed or crashed process is replaced, exits are
 * recorded as expected or not, and `stop()` ends a paused process cleanly.
 */
import { assert, assertEquals } from "./assert.ts";
import { Cleanup } from "./cleanup.ts";
import { startRedis } from "./redis_server.ts";
import { superviseService } from "./supervisor.ts";
import { waitFor } from "./wait.ts";

Deno.test("SupervisedService replaces a killed or crashed process, and stop() ends a paused one", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const inst = cleanup.use(superviseService({
    env: (n) => ({
      ...redis.env(),
      SERVICE_NAME: "supervised",
      CONSUMER_NAME: `supervised-${n}`,
      LOG_LEVEL: "INFO",
    }),
    crashRestartDelayMs: 100,
  }));
  await inst.waitReady();
  const first = inst.current.pid;

  const killed = await inst.kill();
  assertEquals(killed.signal, "SIGKILL");
  await inst.waitReady();
  assert(inst.current.pid !== first, "a new process runs");
  assertEquals([inst.spawn, inst.env.CONSUMER_NAME], [1, "supervised-1"]);

  // A SIGKILL from outside is a crash for the supervisor: replaced too, recorded as unexpected.
  Deno.kill(inst.current.pid, "SIGKILL");
  await waitFor(() => inst.spawn === 2, { message: "the crashed process replaced" });
  await inst.waitReady();
  assertEquals(inst.exits.map((e) => [e.spawn, e.expected]), [[0, true], [1, false]]);
  assertEquals(inst.unexpectedExits.map((e) => e.status.signal), ["SIGKILL"]);

  inst.pause();
  assert(inst.current.paused);
  assertEquals(await inst.isReady(300), false, "a paused process does not answer");
  inst.resume();
  await inst.waitReady();
  inst.pause();
  // Exit code 0: the SIGTERM was handled, so the process was resumed first (a SIGKILL gives 137).
  assertEquals((await inst.stop()).code, 0);
  assertEquals(inst.spawn, 2, "no replacement after stop()");
  assertEquals(inst.exits.at(-1)?.expected, true);
});
