/**
 * End-to-end test of a preloaded backlog (README: Stream entries, Delivery guarantees), with the real `main.ts`
 * process and a real redis-server: 2,000 entries written before the service starts with
 * `STREAM_START_ID=0` are all consumed (pending 0, lag 0, checkpoint at the last entry), and the
 * malformed ones among them end in the dead-letter stream with their error and source.
 *
 * @module
 */

import { assert, assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { serviceEnvFor, startService } from "../support/service.ts";
import { waitFor } from "../support/wait.ts";
import {
  checkpoint,
  type Fields,
  groupInfo,
  isDrained,
  preload,
  readStream,
  wireEntry,
} from "../support/streams.ts";

const STREAM = "backlog-events";
const NAME = "backlog-e2e";
const CONSUMER = "backlog-1";
const COUNT = 2_000;

/** Malformed entries by position in the backlog (README: Stream entries: missing fields, bad JSON). */
const MALFORMED: Record<number, Fields> = {
  100: { aggregateId: "a", payload: "{}" }, // no event
  400: { event: "order.created", payload: "{not json" },
  900: { event: "order.created", payload: "[1,2,3]" }, // not an object
  1300: { event: "order.created" }, // no payload
  1700: { event: "order.created", payload: "{}", headers: "[]" }, // headers not an object
};

Deno.test("the service consumes a preloaded backlog of 2,000 entries and dead-letters the malformed ones", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const ids = await preload(
    client,
    STREAM,
    COUNT,
    (i) => MALFORMED[i] ?? wireEntry("order.created", `agg-${i % 50}`, { n: i }),
  );
  assertEquals(ids.length, COUNT);
  const malformedIds = Object.keys(MALFORMED).map((i) => ids[Number(i)]).sort();

  const svc = cleanup.use(
    await startService({
      env: serviceEnvFor(redis, NAME, CONSUMER, { STREAM, STREAM_START_ID: "0" }),
    }),
  );

  await waitFor(() => isDrained(client, STREAM, NAME), {
    timeoutMs: 30_000,
    intervalMs: 100,
    message: "the backlog to be drained (pending 0, lag 0)",
  });
  const group = await groupInfo(client, STREAM, NAME);
  assertEquals(group?.entriesRead, COUNT, "every entry was read once by the group");
  assertEquals(group?.lastDeliveredId, ids[COUNT - 1]);
  assertEquals((await checkpoint(client, STREAM, NAME))[CONSUMER], ids[COUNT - 1]);

  const dlq = await readStream(client, `${STREAM}:dlq`);
  assertEquals(dlq.map((e) => e.fields.sourceId).sort(), malformedIds);
  for (const { fields } of dlq) {
    const original = MALFORMED[ids.indexOf(fields.sourceId)];
    for (const [k, v] of Object.entries(original)) {
      assertEquals(fields[k], v, `dead letter ${fields.sourceId} keeps field ${k}`);
    }
    assertEquals(fields.sourceStream, STREAM);
    assertEquals(fields.consumer, CONSUMER);
    assertEquals(fields.deliveries, "1");
    assert(fields.error?.includes("malformed"), `error of ${fields.sourceId}: ${fields.error}`);
    assert(!Number.isNaN(Date.parse(fields.failedAt)), `failedAt: ${fields.failedAt}`);
  }

  // The report says the same (the stats refresh every 2 s).
  await waitFor(async () => {
    const res = await svc.request("/health");
    const es = (res.json as { checks: { eventStream: Record<string, unknown> } }).checks
      .eventStream;
    return es.pending === 0 && es.lag === 0;
  }, { message: "/health to report pending 0 and lag 0" });
});
