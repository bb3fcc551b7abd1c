/**
 * One service process (main.ts, defaults, LOG_LEVEL=WARN) consuming several rounds of entries
 * in a row: the time from spawn to `/health/ready` 200, then per round (preload N entries while
 * it consumes, wait until lag and pending are 0) its time and the process' resident memory
 * (VmRSS) and peak (VmHWM) after it, to see whether memory grows from round to round. Not part
 * of `deno task bench`; run with `deno run --allow-all bench/repeat.ts [--drains 5]
 * [--entries 200000] [--payload-bytes 200] [--gc] [--routes]` (`--routes`: the service with
 * `ROUTES='*=>bench-out'`).
 *
 * `--gc` runs the service with `DENO_V8_FLAGS=--trace-gc-nvp` and adds, per round, its minor
 * GCs (scavenges), the bytes that survived them, and the bytes survived since V8 last grew its
 * young generation. V8 doubles the young generation (up to its maximum) once those exceed its
 * size, and RSS steps up by about twice the growth then (bench/RESULTS.md): memory stays flat
 * over the rounds while that total stays under the capacity.
 *
 * @module
 */

import { Cleanup } from "../tests/support/cleanup.ts";
import { startRedis } from "../tests/support/redis_server.ts";
import { startService } from "../tests/support/service.ts";
import { measureDrain, preload } from "./load.ts";
import { benchServiceEnv, fmt, parseFlags, table } from "./support.ts";

const flags = parseFlags(Deno.args, {
  drains: 5,
  entries: 200_000,
  aggregates: 1_000,
  "payload-bytes": 200,
  gc: false,
  routes: false,
});

/** The figures of V8's `--trace-gc-nvp` lines (`[pid:isolate] N ms: GC: {json}`) we use. */
interface GcLine {
  gc: string;
  promoted: number;
  new_space_survived: number;
  new_space_capacity: number;
}

/** The GC lines among `lines` (a line cut short, at exit, is skipped). */
function gcLines(lines: readonly string[]): GcLine[] {
  const out: GcLine[] = [];
  for (const line of lines) {
    const at = line.indexOf("GC: {");
    if (at < 0) continue;
    try {
      out.push(JSON.parse(line.slice(at + 4)) as GcLine);
    } catch { /* cut short */ }
  }
  return out;
}

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
    env: benchServiceEnv(redis.env(), stream, group, {
      ...(flags.gc ? { DENO_V8_FLAGS: "--trace-gc-nvp" } : {}),
      ...(flags.routes ? { ROUTES: "*=>bench-out" } : {}),
    }),
    waitReady: false,
  }),
);
await svc.waitReady(30_000);
const readyMs = performance.now() - spawned;
const idle = memory(svc.pid);
const rows = [["round", "preload to drained (s)", "VmRSS after (MiB)", "VmHWM after (MiB)"]];
if (flags.gc) {
  rows[0].push(
    "scavenges",
    "survived each (KB)",
    "survived since the young generation grew (MB)",
    "young generation (MB)",
  );
}
rows.push(["(ready, idle)", "", fmt(idle.rss, 1), fmt(idle.hwm, 1)]);
let seen = svc.output().split("\n").length;
let capacity = 0;
let sinceGrowth = 0;
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
  if (flags.routes) await admin.sendCommand(["DEL", "bench-out"]);
  const m = memory(svc.pid);
  const row = [String(i), fmt(seconds, 2), fmt(m.rss, 1), fmt(m.hwm, 1)];
  if (flags.gc) {
    const lines = svc.output().split("\n");
    const scavenges = gcLines(lines.slice(seen)).filter((g) => g.gc === "s");
    seen = lines.length;
    let survived = 0;
    for (const g of scavenges) {
      if (g.new_space_capacity !== capacity) [capacity, sinceGrowth] = [g.new_space_capacity, 0];
      const bytes = g.promoted + g.new_space_survived;
      survived += bytes;
      sinceGrowth += bytes;
    }
    row.push(
      String(scavenges.length),
      fmt(survived / Math.max(1, scavenges.length) / 1024, 1),
      fmt(sinceGrowth / 2 ** 20, 1),
      fmt(capacity / 2 ** 20, 0),
    );
  }
  rows.push(row);
}
console.log(`ready ${fmt(readyMs)} ms after spawn (polled every 50 ms)\n`);
console.log(table(rows));
await svc.stop(15_000);
