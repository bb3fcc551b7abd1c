/**
 * Where the service's time goes while it drains a backlog: runs main.ts under the V8 inspector
 * (`--inspect-wait`), samples its CPU through the DevTools protocol from process start until
 * XINFO GROUPS shows lag 0 and pending 0, and prints the functions with the most self time and
 * the most inclusive time (plus idle and GC). Not part of `deno task bench`; run with
 * `deno run --allow-all bench/profile.ts [--entries 100000] [--top 40] [--interval-us 200]`.
 * Extra service variables: `--env KEY=VALUE,KEY=VALUE`. `--from-ms A --to-ms B` count only the
 * samples taken from A to B ms after the profile started (the start-up, the first part of the
 * drain); `--timeline` prints, per 50 ms, the functions that took the most of it.
 *
 * @module
 */

import { Cleanup } from "../tests/support/cleanup.ts";
import { startRedis } from "../tests/support/redis_server.ts";
import { REPO_ROOT, serviceEnv } from "../tests/support/service.ts";
import { freePort } from "../tests/support/wait.ts";
import { measureDrain, preload } from "./load.ts";
import { benchServiceEnv, Child, envPairs, fmt, parseFlags, table } from "./support.ts";

const flags = parseFlags(Deno.args, {
  entries: 100_000,
  aggregates: 1_000,
  top: 40,
  "interval-us": 200,
  env: "",
  callers: "",
  "from-ms": 0,
  "to-ms": Infinity,
  timeline: false,
});

/** The parts of a V8 CPU profile used here. */
interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  samples: number[];
  timeDeltas: number[];
}

/** A minimal DevTools-protocol client over the inspector's WebSocket. */
class Inspector {
  #ws: WebSocket;
  #next = 1;
  #waiting = new Map<number, (msg: { result?: unknown; error?: unknown }) => void>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e) => {
      const msg = JSON.parse(String(e.data)) as { id?: number; result?: unknown; error?: unknown };
      if (msg.id !== undefined) this.#waiting.get(msg.id)?.(msg);
    };
  }

  static async connect(url: string): Promise<Inspector> {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`Cannot connect to ${url}`));
    });
    return new Inspector(ws);
  }

  send<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(id, (msg) => {
        this.#waiting.delete(id);
        if (msg.error) reject(new Error(`${method}: ${JSON.stringify(msg.error)}`));
        else resolve(msg.result as T);
      });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  close(): void {
    this.#ws.close();
  }
}

function where(frame: CpuProfile["nodes"][number]["callFrame"]): string {
  const url = frame.url.replace(`file://${REPO_ROOT}/`, "").replace(/^.*node_modules\//, "npm:");
  const name = frame.functionName || "(anonymous)";
  return url ? `${name} ${url}:${frame.lineNumber + 1}` : name;
}

/** ms per distinct call stack (leaf first, `depth` frames) of samples whose leaf includes `name`. */
function callers(profile: CpuProfile, name: string, depth = 16): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const out = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    let id: number | undefined = profile.samples[i];
    if (!where(byId.get(id)!.callFrame).includes(name)) continue;
    const frames: string[] = [];
    while (id !== undefined && frames.length < depth) {
      frames.push(where(byId.get(id)!.callFrame));
      id = parent.get(id);
    }
    const key = frames.join("\n    <- ");
    out.set(key, (out.get(key) ?? 0) + (profile.timeDeltas[i + 1] ?? 0) / 1000);
  }
  return out;
}

/** Prints, per 50 ms of the profile, the four functions with the most self time. */
function timeline(profile: CpuProfile): void {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const buckets = new Map<number, Map<string, number>>();
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    at += (profile.timeDeltas[i] ?? 0) / 1000;
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const b = Math.floor(at / 50);
    const m = buckets.get(b) ?? new Map<string, number>();
    buckets.set(b, m);
    const leaf = where(byId.get(profile.samples[i])!.callFrame);
    m.set(leaf, (m.get(leaf) ?? 0) + ms);
  }
  for (const [b, m] of [...buckets.entries()].sort((x, y) => x[0] - y[0])) {
    const top = [...m.entries()].sort((x, y) => y[1] - x[1]).slice(0, 4)
      .map(([k, v]) => `${k.replace(/ (src|npm:|ext:)\S*/, "").slice(0, 28)} ${v.toFixed(0)}`);
    console.log(`${String(b * 50).padStart(5)} ms: ${top.join(" | ")}`);
  }
}

/** Self and inclusive ms per function (inclusive counts a function once per stack). */
function summarize(profile: CpuProfile): { self: Map<string, number>; total: Map<string, number> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    at += (profile.timeDeltas[i] ?? 0) / 1000;
    if (at < flags["from-ms"] || at >= flags["to-ms"]) continue;
    let id: number | undefined = profile.samples[i];
    const leaf = where(byId.get(id)!.callFrame);
    self.set(leaf, (self.get(leaf) ?? 0) + ms);
    const seen = new Set<string>();
    while (id !== undefined) {
      const key = where(byId.get(id)!.callFrame);
      if (!seen.has(key)) {
        seen.add(key);
        total.set(key, (total.get(key) ?? 0) + ms);
      }
      id = parent.get(id);
    }
  }
  return { self, total };
}

async function main(cleanup: Cleanup): Promise<void> {
  const redis = cleanup.use(await startRedis());
  const admin = await redis.client();
  await preload(admin, "bench-in", flags.entries, flags.aggregates);
  const inspectPort = freePort();
  const env = serviceEnv(
    benchServiceEnv(redis.env(), "bench-in", "bench", envPairs(flags.env, "--env")),
    freePort(),
  );
  const child = cleanup.use(
    new Child(Deno.execPath(), [
      "run",
      `--inspect-wait=127.0.0.1:${inspectPort}`,
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-sys",
      "--config",
      `${REPO_ROOT}/deno.json`,
      `${REPO_ROOT}/main.ts`,
    ], { env, cwd: REPO_ROOT }),
  );
  let targets: { webSocketDebuggerUrl: string }[] = [];
  for (let i = 0; i < 200 && targets.length === 0; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${inspectPort}/json/list`);
      targets = await res.json();
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  if (targets.length === 0) throw new Error(`No inspector target:\n${child.tail()}`);
  const inspector = await Inspector.connect(targets[0].webSocketDebuggerUrl);
  await inspector.send("Profiler.enable");
  await inspector.send("Profiler.setSamplingInterval", { interval: flags["interval-us"] });
  await inspector.send("Runtime.enable");
  await inspector.send("Profiler.start");
  const spawnedAt = performance.now();
  await inspector.send("Runtime.runIfWaitingForDebugger");
  let startedProfileAt = 0;
  const drain = await measureDrain({
    client: admin,
    stream: "bench-in",
    group: "bench",
    total: flags.entries,
    spawnedAt,
    isAlive: () => child.running,
    onStart: () => (startedProfileAt = performance.now()),
  });
  const { profile } = await inspector.send<{ profile: CpuProfile }>("Profiler.stop");
  inspector.close();
  console.log(
    `drained ${fmt(drain.entries)} entries in ${fmt(drain.durationMs)} ms = ${fmt(drain.rate)}/s ` +
      `under the profiler (consumption started ${fmt(startedProfileAt - spawnedAt)} ms after ` +
      `the process was released)`,
  );
  if (flags.timeline) timeline(profile);
  const { self, total } = summarize(profile);
  const sampled = [...self.values()].reduce((a, b) => a + b, 0);
  const top = (m: Map<string, number>, filter: (k: string) => boolean = () => true) =>
    [...m.entries()].filter(([k]) => filter(k)).sort((a, b) => b[1] - a[1]).slice(0, flags.top)
      .map(([k, ms]) => [k, fmt(ms, 1), fmt((ms / sampled) * 100, 1)]);
  console.log(`\nsampled ${fmt(sampled)} ms of the main thread\n`);
  console.log("top self time");
  console.log(table([["function", "ms", "%"], ...top(self)]));
  console.log("\ntop inclusive time (service code)");
  console.log(table([["function", "ms", "%"], ...top(total, (k) => / (src|main)/.test(k))]));
  if (flags.callers) {
    console.log(`\nstacks ending in ${flags.callers}`);
    const stacks = [...callers(profile, flags.callers).entries()].sort((a, b) => b[1] - a[1]);
    for (const [stack, ms] of stacks.slice(0, 8)) console.log(`${fmt(ms, 1)} ms: ${stack}\n`);
  }
  console.log("\ntop inclusive time (dependencies)");
  console.log(table([["function", "ms", "%"], ...top(total, (k) => k.includes("npm:"))]));
}

if (import.meta.main) {
  const cleanup = new Cleanup();
  let code = 0;
  try {
    await main(cleanup);
  } catch (err) {
    console.error(`profile failed: ${err instanceof Error ? err.message : err}`);
    code = 1;
  } finally {
    for (const err of await cleanup.run()) console.error("cleanup step failed:", err);
  }
  Deno.exit(code);
}
