/**
 * How busy Redis is through one drain of the service: preloads `--entries` (plus `--skip`)
 * entries, spawns the service (main.ts, defaults, LOG_LEVEL=WARN), and every ~50 ms prints the
 * share of that time Redis spent on its CPU (`used_cpu_user` + `used_cpu_sys` of `INFO cpu`) and
 * the entries acknowledged per second, from the first acknowledgement after `--skip` entries to
 * the end. A drain bound by Redis shows ~100 %; one bound by the consumer or by round trips, less.
 * On Linux each line also gives the share of that time Redis was ready to run but waiting for a
 * CPU (the run delay of `/proc/<pid>/schedstat`): on two cores shared with the consumer, Redis
 * loses time to the consumer's threads woken on its core (bench/RESULTS.md, session 9).
 * Each line also gives the service's CPU in that time (`/proc/<pid>/task/<tid>/schedstat`): its
 * main thread (the JavaScript) and its other threads together (V8's compiler and garbage
 * collector workers, I/O), which share the cores with Redis.
 * `--skip N` leaves the first N entries out of the window: the rate of a consumer already warm.
 * Not part of `deno task bench`; run with `deno run --allow-all bench/timeline.ts [--entries
 * 200000] [--skip 0] [--routes] [--env KEY=VALUE,KEY=VALUE]` (bench/RESULTS.md, session 7).
 *
 * @module
 */

import { Cleanup } from "../tests/support/cleanup.ts";
import { startRedis } from "../tests/support/redis_server.ts";
import { startService } from "../tests/support/service.ts";
import { groupState, preload } from "./load.ts";
import { benchServiceEnv, envPairs, fmt, parseFlags } from "./support.ts";

const flags = parseFlags(Deno.args, {
  entries: 200_000,
  skip: 0,
  aggregates: 1_000,
  "payload-bytes": 200,
  routes: false,
  env: "",
  "window-ms": 50,
});
const STREAM = "bench";
const GROUP = "bench-group";

/** Redis' CPU time so far (ms), as it reports it. */
async function redisCpuMs(client: { sendCommand(args: string[]): Promise<unknown> }) {
  const info = String(await client.sendCommand(["INFO", "cpu"]));
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1]);
  return (field("used_cpu_user") + field("used_cpu_sys")) * 1000;
}

/** Time (ms) the main thread of process `pid` spent ready to run, waiting for a CPU (Linux). */
async function runDelayMs(pid: number): Promise<number | undefined> {
  try {
    return Number((await Deno.readTextFile(`/proc/${pid}/schedstat`)).split(" ")[1]) / 1e6;
  } catch {
    return undefined;
  }
}

/**
 * CPU time (ms) of process `pid`'s main thread and of its other threads so far, or undefined
 * where /proc has no such figures (not Linux). A thread gone since the last call takes its time
 * with it: a window's share of the others is then clamped at 0.
 */
async function threadCpuMs(pid: number): Promise<{ main: number; others: number } | undefined> {
  try {
    let main = 0;
    let others = 0;
    for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
      const line = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/schedstat`);
      const ms = Number(line.split(" ")[0]) / 1e6;
      if (task.name === String(pid)) main += ms;
      else others += ms;
    }
    return { main, others };
  } catch {
    return undefined;
  }
}

await using cleanup = new Cleanup();
const redis = cleanup.use(await startRedis());
const admin = await redis.client({ name: "bench-admin" });
const total = flags.entries + flags.skip;
await preload(admin, STREAM, total, flags.aggregates, flags["payload-bytes"]);
const env = benchServiceEnv(redis.env(), STREAM, GROUP, {
  ...(flags.routes ? { ROUTES: "*=>bench-out" } : {}),
  ...envPairs(flags.env, "--env"),
});
const svc = cleanup.use(await startService({ env, waitReady: false }));
const deadline = Date.now() + 120_000;
let first: { at: number; cpu: number; waited?: number } | undefined;
let last = {
  at: 0,
  cpu: 0,
  done: 0,
  threads: await threadCpuMs(svc.pid),
  waited: await runDelayMs(redis.pid),
};
while (true) {
  if (Date.now() > deadline || svc.status) {
    throw new Error(`The drain did not end\n--- service output ---\n${svc.output()}`);
  }
  const s = await groupState(admin, STREAM, GROUP);
  const at = performance.now();
  const cpu = await redisCpuMs(admin);
  const threads = await threadCpuMs(svc.pid);
  const waited = await runDelayMs(redis.pid);
  const done = s.entriesRead - s.pending;
  const waiting = (since: number, before?: number) =>
    waited !== undefined && before !== undefined
      ? `, waiting for a CPU ${fmt(Math.max(0, (100 * (waited - before)) / (at - since)))} %`
      : "";
  if (!first) {
    if (s.entriesRead > 0 && done >= flags.skip) {
      first = { at, cpu, waited };
      last = { at, cpu, done, threads, waited };
    }
  } else if (at - last.at >= flags["window-ms"]) {
    const ms = at - last.at;
    const share = (a: number, b: number) => fmt(Math.max(0, (100 * (a - b)) / ms)).padStart(3);
    const service = threads && last.threads
      ? `  service main ${share(threads.main, last.threads.main)} %, other threads ${
        share(threads.others, last.threads.others)
      } %`
      : "";
    const wait = waited !== undefined && last.waited !== undefined
      ? ` (waiting ${share(waited, last.waited)} %)`
      : "";
    console.log(
      `${fmt(at - first.at).padStart(6)} ms  redis busy ${share(cpu, last.cpu)} %${wait}  ${
        fmt(((done - last.done) / ms) * 1000).padStart(8)
      } entries/s${service}`,
    );
    last = { at, cpu, done, threads, waited };
  }
  if (first && s.lag === 0 && s.pending === 0 && s.entriesRead >= total) {
    const ms = at - first.at;
    console.log(
      `drained ${fmt(flags.entries)} entries in ${fmt(ms)} ms = ${
        fmt((flags.entries / ms) * 1000)
      }/s, redis busy ${fmt((100 * (cpu - first.cpu)) / ms)} % of it${
        waiting(first.at, first.waited)
      }`,
    );
    break;
  }
  await new Promise((r) => setTimeout(r, 5));
}
await svc.stop(15_000);
