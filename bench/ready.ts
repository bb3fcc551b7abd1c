/**
 * How soon the service is ready: spawns main.ts (defaults, LOG_LEVEL=WARN) `--spawns` times
 * against one redis-server, polls `GET /health/ready` every 3 ms from the spawn until it answers
 * 200, stops it, and prints the median, the minimum and every time (ms). Not part of
 * `deno task bench`; run with `deno run --allow-all bench/ready.ts [--spawns 12]`.
 *
 * @module
 */

import { Cleanup } from "../tests/support/cleanup.ts";
import { startRedis } from "../tests/support/redis_server.ts";
import { startService } from "../tests/support/service.ts";
import { freePort } from "../tests/support/wait.ts";
import { fmt, parseFlags } from "./support.ts";

const flags = parseFlags(Deno.args, { spawns: 12 });

await using cleanup = new Cleanup();
const redis = cleanup.use(await startRedis());
const times: number[] = [];
for (let i = 0; i < Math.max(1, flags.spawns); i++) {
  const port = await freePort();
  const spawned = performance.now();
  const svc = await startService({
    env: {
      ...redis.env(),
      SERVICE_NAME: "bench-ready",
      SERVICE_PORT: String(port),
      LOG_LEVEL: "WARN",
    },
    waitReady: false,
  });
  const deadline = Date.now() + 30_000;
  while (true) {
    if (Date.now() > deadline || svc.status) {
      throw new Error(`Not ready within 30 s\n--- service output ---\n${svc.output()}`);
    }
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health/ready`);
      await res.body?.cancel();
      if (res.status === 200) break;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 3));
  }
  times.push(performance.now() - spawned);
  await svc.stop(10_000);
}
times.sort((a, b) => a - b);
console.log(
  `ready after spawn: median ${fmt(times[Math.floor((times.length - 1) / 2)])} ms, min ${
    fmt(times[0])
  } ms (all: ${times.map((t) => fmt(t)).join(", ")})`,
);
