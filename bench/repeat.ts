/**
 * One service process (main.ts, defaults, LOG_LEVEL=WARN) consuming several rounds of entries
 * in a row: the time from spawn to `/health/ready` 200, then per round (preload N entries while
 * it consumes, wait until lag and pending are 0) its time and the process' resident memory
 * (VmRSS) and peak (VmHWM) after it, to see whether memory grows from round to round. Not part of `deno task bench`; run with `deno run --allow-all
 * bench/repeat.ts [--drains 5] [--entries 200000] [--payload-bytes 200]`.
 *
 * @module
 */

import { Cleanup } from "../tests/support/cleanup.ts";
import { startRedis } from "../tests/support/redis_server.ts";
import { startService } from "../tests/support/service.ts";
import { measureDrain, preload } from "./load.ts";
import { fmt, parseFlags, table } from "./support.ts";

const flags = parseFlags(Deno.args, {
  drains: 5,
  entries: 200_000,
  aggregates: 1_000,
  "payload-bytes": 200,
});

/** VmRSS and VmHWM of `pid` in MiB. */
function memory(pid: number): { rss: number; hwm: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status)?.[1]);
  return { rss: kib("VmRSS") / 1024, hwm: kib("VmHWM") / 1024 };
}

await using cleanup = new Cleanup();
const redis = cleanup.use(await startRedis());
const admin = await redis.client({ name: "bench-admin" });
const stream = "bench-in";
const group = "bench";
const spawned = performance.now();
const svc = cleanup.use(
  await startService({
    env: {
      ...redis.env(),
      SERVICE_NAME: "bench-service",
      STREAM: stream,
      CONSUMER_GROUP: group,
      CONSUMER_NAME: "service-1",
      STREAM_START_ID: "0",
      LOG_LEVEL: "WARN",
    },
    waitReady: false,
  }),
);
await svc.waitReady(30_000);
const readyMs = performance.now() - spawned;
const idle = memory(svc.pid);
const rows = [["round", "preload to drained (s)", "VmRSS after (MiB)", "VmHWM after (MiB)"]];
rows.push(["(ready, idle)", "", fmt(idle.rss, 1), fmt(idle.hwm, 1)]);
for (let i = 1; i <= flags.drains; i++) {
  const began = performance.now();
  await preload(admin, stream, flags.entries, flags.aggregates, flags["payload-bytes"]);
  // The group's entries-read counter adds up over the rounds.
  await measureDrain({
    client: admin,
    stream,
    group,
    total: i * flags.entries,
    spawnedAt: began,
    isAlive: () => svc.status === undefined,
  });
  const seconds = (performance.now() - began) / 1000;
  await admin.sendCommand(["XTRIM", stream, "MAXLEN", "0"]);
  const m = memory(svc.pid);
  rows.push([String(i), fmt(seconds, 2), fmt(m.rss, 1), fmt(m.hwm, 1)]);
}
console.log(`ready ${fmt(readyMs)} ms after spawn (polled every 50 ms)\n`);
console.log(table(rows));
await svc.stop(15_000);
