/**
 * Exactly-once forwarding across slots through killed processes (README "Redis Cluster and
 * partitioned streams"), on a single redis-server: consumer processes (`consumers_fixture.ts`)
 * in the cross-slot mode the service uses on Redis Cluster (OUTBOX_ACROSS_SLOTS, a fixture
 * variable, not the service's) forward to a stream in another slot through the outbox and the
 * relay, and are SIGKILLed at random points of the drain, so that some die between a settle
 * and its relay, or between a relay's copy and its acknowledgement. The target must hold every
 * source entry exactly once and the outbox must end empty.
 *
 * @module
 */

import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { waitFor } from "../support/wait.ts";
import { isDrained, preload, readStream, xlen } from "../support/streams.ts";
import { assertExactlyOnce } from "../support/coverage.ts";
import { ConsumersProcess } from "../support/consumers_process.ts";
import { KeySchema, sameSlot } from "../../src/stream/keys.ts";

const STREAM = "{src}";
const GROUP = "outbox-kill";
const OUT = "{dst}";

Deno.test("forwarding across slots stays exactly once when consumers are SIGKILLed mid-drain", async () => {
  const N = 6000;
  const KILLS = 3;
  assert(!sameSlot(STREAM, OUT), "the target is in another slot");
  const outbox = new KeySchema({ group: GROUP }).outbox(STREAM);
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const ids = await preload(client, STREAM, N);
  let outAtKill = 0;
  for (let k = 0;; k++) {
    const proc = new ConsumersProcess({
      ...redis.env(),
      SERVICE_NAME: "outbox-kill",
      STREAM,
      CONSUMER_GROUP: GROUP,
      STREAM_START_ID: "0",
      ROUTES: `*=>${OUT}`,
      CLAIM_IDLE_MS: "1000",
      MAX_DELIVERIES: "10",
      OUTBOX_ACROSS_SLOTS: "true",
      // A new name after each kill: the dead ones' entries (stream and outbox) are claimed.
      CONSUMER_PREFIX: `k${k}`,
      COUNT_KEY: "handled",
    });
    cleanup.add(() => proc.stop());
    await proc.waitForLine("connected", 30_000);
    await proc.go();
    await proc.waitForLine("started", 30_000);
    if (k === KILLS) break;
    const target = outAtKill + 300 + Math.floor(Math.random() * 1200);
    await waitFor(async () => await xlen(client, OUT) >= target, {
      timeoutMs: 60_000,
      intervalMs: 5,
      message: `${OUT} to reach ${target} entries before kill ${k + 1}`,
    });
    await proc.kill();
    outAtKill = await xlen(client, OUT);
    console.log(
      `kill ${k + 1}: ${outAtKill} forwarded, ${await xlen(client, outbox)} waiting in the outbox`,
    );
    assert(outAtKill < N, `kill ${k + 1} came after the drain ended (${outAtKill} forwarded)`);
  }
  await waitFor(
    async () => await isDrained(client, STREAM, GROUP) && await xlen(client, outbox) === 0,
    { timeoutMs: 60_000, intervalMs: 100, message: "source drained and outbox emptied" },
  );
  assertExactlyOnce(await readStream(client, OUT), ids, OUT);
  assertEquals(await xlen(client, `${STREAM}:dlq`), 0, "nothing dead-lettered");
});
