/**
 * Handlers as the product, end to end (README, "Writing handlers"): the diagnostic handlers on the
 * spawned service (entries emitted by `diagnostic.emit` counted exactly once through repeated
 * `kill -9`; nothing emitted by failed deliveries; schema failures dead-lettered at once; timeouts
 * dead-lettered saying so), and a program of another project that imports `mod.ts`, defines its
 * own handler with `defineHandler` and runs `createService(...).run()`.
 *
 * @module
 */

import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { REPO_ROOT, serviceEnvFor, type ServiceProcess, startService } from "../support/service.ts";
import { waitFor } from "../support/wait.ts";
import { isDrained, readStream, wireEntry, xadd, xlen } from "../support/streams.ts";

const STREAM = "handler-events";
const GROUP = "handlers";

function env(redis: RedisServer, consumer: string, extra: Record<string, string> = {}) {
  return serviceEnvFor(redis, "handlers-svc", consumer, {
    STREAM,
    CONSUMER_GROUP: GROUP,
    STREAM_START_ID: "0",
    DIAGNOSTIC_EVENTS: "true",
    ...extra,
  });
}

Deno.test("entries emitted by diagnostic.emit are written exactly once through repeated kill -9", async () => {
  const SOURCES = 2000;
  const EACH = 3;
  const KILLS = 4;
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const sources: string[] = [];
  for (let i = 0; i < SOURCES; i++) {
    sources.push(
      await xadd(
        client,
        STREAM,
        wireEntry("diagnostic.emit", `agg-${i % 50}`, {
          count: EACH,
          stream: "emitted",
        }),
      ),
    );
  }
  const extra = { CLAIM_IDLE_MS: "1000", MAX_DELIVERIES: "20" };
  let svc: ServiceProcess = cleanup.use(await startService({ env: env(redis, "emit-0", extra) }));
  for (let k = 1; k <= KILLS; k++) {
    const target = Math.floor((SOURCES * EACH * k) / (KILLS + 2));
    await waitFor(async () => await xlen(client, "emitted") >= target, {
      timeoutMs: 30_000,
      intervalMs: 5,
      message: `emitted to reach ${target} before kill ${k}`,
    });
    await svc.kill();
    svc = cleanup.use(await startService({ env: env(redis, `emit-${k}`, extra) }));
  }
  await waitFor(() => isDrained(client, STREAM, GROUP), {
    timeoutMs: 60_000,
    intervalMs: 100,
    message: "the group drained",
  });
  const emitted = await readStream(client, "emitted");
  const seen = new Map<string, number>();
  for (const e of emitted) {
    const key = `${JSON.parse(e.fields.headers).causationId}#${JSON.parse(e.fields.payload).i}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  const duplicates = [...seen].filter(([, n]) => n > 1).map(([k]) => k);
  const missing = sources.flatMap((id) =>
    Array.from({ length: EACH }, (_, i) => `${id}#${i}`).filter((k) => !seen.has(k))
  );
  assertEquals({
    total: emitted.length,
    duplicates: duplicates.slice(0, 5),
    missing: missing.slice(0, 5),
  }, {
    total: SOURCES * EACH,
    duplicates: [],
    missing: [],
  });
  assertEquals(await xlen(client, `${STREAM}:dlq`), 0, "nothing dead-lettered");
});

Deno.test("failed deliveries emit nothing; schema failures are dead-lettered at once, timeouts saying so", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const emitting = await xadd(
    client,
    STREAM,
    wireEntry("diagnostic.emit", "a", { count: 2, stream: "emitted", failTimes: 2 }),
  );
  const typedBad = await xadd(client, STREAM, wireEntry("diagnostic.typed", "b", { n: "one" }));
  const typedGood = await xadd(client, STREAM, wireEntry("diagnostic.typed", "c", { n: 1 }));
  const hang = await xadd(client, STREAM, wireEntry("diagnostic.hang", "d"));
  cleanup.use(await startService({ env: env(redis, "rules-1", { MAX_DELIVERIES: "3" }) }));
  await waitFor(() => isDrained(client, STREAM, GROUP), {
    timeoutMs: 30_000,
    intervalMs: 100,
    message: "the group drained",
  });
  const emitted = await readStream(client, "emitted");
  assertEquals(
    emitted.map((e) => [JSON.parse(e.fields.headers).causationId, JSON.parse(e.fields.payload)]),
    [[emitting, { i: 0, of: 2 }], [emitting, { i: 1, of: 2 }]],
    "only the third (successful) delivery's entries",
  );
  const dlq = new Map(
    (await readStream(client, `${STREAM}:dlq`)).map((e) => [e.fields.sourceId, e]),
  );
  assertEquals([...dlq.keys()].sort(), [typedBad, hang].sort());
  assertStringIncludes(dlq.get(typedBad)!.fields.error, "payload invalid: n:");
  assertEquals(dlq.get(typedBad)!.fields.deliveries, "1", "dead-lettered at once");
  assertStringIncludes(dlq.get(hang)!.fields.error, "timed out after 1000 ms");
  assertEquals(dlq.get(hang)!.fields.deliveries, "3");
  assert(!dlq.has(typedGood));
});

Deno.test("a program of another project imports mod.ts, defines a handler and runs the service", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const dir = await Deno.makeTempDir({ prefix: "outside-project-" });
  cleanup.add(() => Deno.remove(dir, { recursive: true }));
  const program = `${dir}/service.ts`;
  await Deno.writeTextFile(
    program,
    `import { createService, defineHandler, z } from ${JSON.stringify(`${REPO_ROOT}/mod.ts`)};

const ping = defineHandler({
  event: "outside.ping",
  payload: z.object({ n: z.number() }),
  async handle(event, ctx) {
    await ctx.publish({ stream: "outside-out", event: "outside.pong", payload: { n: event.payload.n * 2 } });
  },
});

await createService({ handlers: [ping] }).run();
`,
  );
  const svc = cleanup.use(
    await startService({
      env: serviceEnvFor(redis, "outside", "outside-1", {
        STREAM: "outside-in",
        STREAM_START_ID: "0",
      }),
      program,
      cwd: dir,
      readyTimeoutMs: 60_000,
    }),
  );
  const ids: string[] = [];
  for (const n of [1, 2, 3]) {
    ids.push(await xadd(client, "outside-in", wireEntry("outside.ping", `p${n}`, { n })));
  }
  await waitFor(async () => await xlen(client, "outside-out") === 3, { message: "3 pongs" });
  const out = await readStream(client, "outside-out");
  assertEquals(
    out.map((
      e,
    ) => [
      e.fields.event,
      JSON.parse(e.fields.payload).n,
      JSON.parse(e.fields.headers).causationId,
    ]),
    [
      ["outside.pong", 2, ids[0]],
      ["outside.pong", 4, ids[1]],
      ["outside.pong", 6, ids[2]],
    ],
  );
  const status = await svc.stop(20_000);
  assertEquals(status.code, 0, svc.output());
});
