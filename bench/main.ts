/**
 * `deno task bench`: the service (main.ts, a child process) side by side with a minimal
 * hand-written node-redis consumer loop (bench/baseline.ts, its own process), on one throwaway
 * redis-server (free port, no persistence) (README: Performance):
 *
 * 1. drain throughput: N preloaded entries, from the start of consumption until XINFO GROUPS
 *    shows lag 0 and pending 0 (entries/s; also CPU time of the consumer and of Redis);
 * 2. end-to-end latency XADD → acknowledgement at a fixed rate: the service forwards with
 *    ROUTES="*=>bench-out", the baseline XADDs to bench-out in the MULTI of its XACK, and a
 *    reader here XREADs bench-out (p50/p99/max);
 * 3. `GET /health/live` latency while the service drains a backlog, and when idle;
 * 4. peak RSS (VmHWM) of the consumer processes.
 *
 * Flags: --entries N (200000), --aggregates N (1000), --payload-bytes N (200: the size of each
 * entry's payload), --runs N (3 drains each, the median is reported), --rate N/s (500),
 * --seconds S (10), --warmup-ms MS (1000), --health-requests N (500), --only
 * drain,latency,health, --baseline-count N (1000: the COUNT of the baseline's XREADGROUP; the
 * service reads with its defaults), --routes (the drain runs the service with
 * ROUTES="*=>bench-out", against the same plain baseline), --service-env K=V,K=V (more
 * variables for the service, e.g. BATCH_SIZE=1000; not the defaults the harness runs).
 * The defaults mirror the outside harness of the performance issue: 200,000 entries with a
 * 200-byte payload, the baseline reading COUNT 1000, the service with its defaults.
 * It is a benchmark, not a test: nothing here is asserted in `deno task test`.
 *
 * @module
 */

import { Cleanup } from "../tests/support/cleanup.ts";
import { startRedis } from "../tests/support/redis_server.ts";
import { REPO_ROOT, type ServiceProcess, startService } from "../tests/support/service.ts";
import {
  commandStats,
  describeCommands,
  type DrainResult,
  groupState,
  type LatencyResult,
  measureDrain,
  measureLatency,
  preload,
} from "./load.ts";
import {
  benchServiceEnv,
  Child,
  cpuTimeMs,
  envPairs,
  fmt,
  parseFlags,
  peakRssKiB,
  percentile,
  table,
} from "./support.ts";

const GROUP = "bench";
const STREAM = "bench-in";
const OUT_STREAM = "bench-out";
/** The performance issue's drain targets: 0.70 with defaults, 0.50 with `ROUTES='*=>out'`. */
const TARGET_RATIO = 0.7;
const ROUTES_TARGET_RATIO = 0.5;

const flags = parseFlags(Deno.args, {
  entries: 200_000,
  aggregates: 1_000,
  "payload-bytes": 200,
  "baseline-count": 1_000,
  routes: false,
  "service-env": "",
  rate: 500,
  seconds: 10,
  "warmup-ms": 1_000,
  "health-requests": 500,
  runs: 3,
  only: "drain,latency,health",
  help: false,
});

/** A consumer under test: the service or the baseline, as one process. */
interface Consumer {
  kind: "service" | "baseline";
  pid: number;
  alive(): boolean;
  /** Resolves once the consumer reads (service: /health/ready 200; baseline: "READY"). */
  ready(): Promise<void>;
  stop(): Promise<void>;
  output(): string;
}

interface DrainFigures extends DrainResult {
  /** XREADGROUP calls and acknowledging calls (EVALSHA, EXEC or XACK) seen by Redis. */
  reads: number;
  ackCalls: number;
  consumerCpuMs: number;
  redisCpuMs: number;
  peakRssKiB: number;
}

interface LatencyFigures extends LatencyResult {
  peakRssKiB: number;
}

interface HealthFigures {
  loaded: number[];
  idle: number[];
  loadedThroughout: boolean;
  backlogAfter: number;
}

function log(message: string): void {
  console.error(`[bench] ${message}`);
}

async function run(cleanup: Cleanup): Promise<void> {
  const only = new Set(flags.only.split(",").map((s) => s.trim()));
  const redis = cleanup.use(await startRedis());
  const admin = await redis.client({ name: "bench-admin" });
  log(
    `redis-server on port ${redis.port} (pid ${redis.pid}); ${Deno.build.os}, ` +
      `${navigator.hardwareConcurrency} cpus`,
  );

  const startConsumer = async (
    kind: Consumer["kind"],
    forward?: string,
  ): Promise<Consumer> => {
    if (kind === "service") {
      const env = benchServiceEnv(redis.env(), STREAM, GROUP, {
        ...(forward ? { ROUTES: `*=>${forward}` } : {}),
        ...envPairs(flags["service-env"], "--service-env"),
      });
      const svc: ServiceProcess = cleanup.use(await startService({ env, waitReady: false }));
      return {
        kind,
        pid: svc.pid,
        alive: () => svc.status === undefined,
        ready: () => svc.waitReady(30_000),
        stop: async () => {
          const status = await svc.stop(15_000);
          if (status.code !== 0) log(`service exited with ${JSON.stringify(status)}`);
        },
        output: () => svc.output(),
      };
    }
    const args = [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--config",
      `${REPO_ROOT}/deno.json`,
      `${REPO_ROOT}/bench/baseline.ts`,
      "--port",
      String(redis.port),
      "--stream",
      STREAM,
      "--group",
      GROUP,
      "--count",
      String(flags["baseline-count"]),
    ];
    if (forward) args.push("--forward", forward);
    const child = cleanup.use(new Child(Deno.execPath(), args, { cwd: REPO_ROOT }));
    return {
      kind,
      pid: child.pid,
      alive: () => child.running,
      ready: () => child.waitForLine("READY", 30_000),
      stop: () => child.stop(),
      output: () => child.tail(),
    };
  };

  // --- 1. drain throughput ------------------------------------------------------------------
  const runs = new Map<Consumer["kind"], DrainFigures[]>([["service", []], ["baseline", []]]);
  const drainOnce = async (kind: Consumer["kind"]) => {
    await admin.sendCommand(["FLUSHALL"]);
    log(`drain/${kind}: preloading ${fmt(flags.entries)} entries`);
    await preload(admin, STREAM, flags.entries, flags.aggregates, flags["payload-bytes"]);
    await admin.sendCommand(["CONFIG", "RESETSTAT"]);
    const spawnedAt = performance.now();
    // With --routes only the service forwards: the reference stays the plain loop.
    const consumer = await startConsumer(
      kind,
      flags.routes && kind === "service" ? OUT_STREAM : undefined,
    );
    try {
      let cpu0 = 0;
      let redisCpu0 = 0;
      const result = await measureDrain({
        client: admin,
        stream: STREAM,
        group: GROUP,
        total: flags.entries,
        spawnedAt,
        isAlive: consumer.alive,
        onStart: () => {
          cpu0 = cpuTimeMs(consumer.pid);
          redisCpu0 = cpuTimeMs(redis.pid);
        },
      });
      const stats = await commandStats(admin);
      const count = (name: string) => stats.get(name)?.calls ?? 0;
      const ackCalls = count("evalsha") + count("exec") || count("xack");
      const figures: DrainFigures = {
        ...result,
        reads: count("xreadgroup"),
        ackCalls,
        consumerCpuMs: cpuTimeMs(consumer.pid) - cpu0,
        redisCpuMs: cpuTimeMs(redis.pid) - redisCpu0,
        peakRssKiB: peakRssKiB(consumer.pid),
      };
      log(
        `drain/${kind}: ${fmt(result.entries)} entries in ${fmt(result.durationMs)} ms = ` +
          `${fmt(result.rate)}/s (cpu ${fmt(figures.consumerCpuMs)} ms, redis cpu ` +
          `${fmt(figures.redisCpuMs)} ms)`,
      );
      log(`drain/${kind}: commands: ${describeCommands(stats, flags.entries).text}`);
      runs.get(kind)!.push(figures);
    } catch (err) {
      throw new Error(`drain/${kind}: ${err}\n--- consumer output ---\n${consumer.output()}`);
    } finally {
      await consumer.stop();
    }
  };
  const drains = new Map<Consumer["kind"], DrainFigures>();
  if (only.has("drain")) {
    for (let i = 0; i < Math.max(1, flags.runs); i++) {
      await drainOnce("service");
      await drainOnce("baseline");
    }
    for (const [kind, list] of runs) {
      // The run with the median rate stands for the consumer; the spread goes to the log.
      const sorted = [...list].sort((a, b) => a.rate - b.rate);
      drains.set(kind, sorted[Math.floor((sorted.length - 1) / 2)]);
      log(`drain/${kind}: rates ${sorted.map((d) => fmt(d.rate)).join(", ")} entries/s`);
    }
  }

  // --- 2. end-to-end latency ----------------------------------------------------------------
  const latencies = new Map<Consumer["kind"], LatencyFigures>();
  if (only.has("latency")) {
    const sender = await redis.client({ name: "bench-sender" });
    const reader = await redis.client({ name: "bench-reader" });
    for (const kind of ["service", "baseline"] as const) {
      await admin.sendCommand(["FLUSHALL"]);
      const consumer = await startConsumer(kind, OUT_STREAM);
      try {
        await consumer.ready();
        if (!(await groupState(admin, STREAM, GROUP)).exists) {
          throw new Error("consumer is ready but its group does not exist");
        }
        log(`latency/${kind}: ${flags.rate}/s for ${flags.seconds} s`);
        const result = await measureLatency({
          sender,
          reader,
          stream: STREAM,
          outStream: OUT_STREAM,
          rate: flags.rate,
          seconds: flags.seconds,
          warmupMs: flags["warmup-ms"],
          aggregates: flags.aggregates,
        });
        if (result.missing > 0) log(`latency/${kind}: ${result.missing} entries never forwarded`);
        latencies.set(kind, { ...result, peakRssKiB: peakRssKiB(consumer.pid) });
        log(
          `latency/${kind}: p50 ${fmt(percentile(result.latenciesMs, 50), 2)} ms, p99 ` +
            `${fmt(percentile(result.latenciesMs, 99), 2)} ms (${result.measured} measured)`,
        );
      } catch (err) {
        throw new Error(`latency/${kind}: ${err}\n--- consumer output ---\n${consumer.output()}`);
      } finally {
        await consumer.stop();
      }
    }
  }

  // --- 3. /health/live under load -----------------------------------------------------------
  let health: HealthFigures | undefined;
  let healthRssKiB = NaN;
  if (only.has("health")) {
    await admin.sendCommand(["FLUSHALL"]);
    log(`health: preloading ${fmt(flags.entries)} entries`);
    await preload(admin, STREAM, flags.entries, flags.aggregates, flags["payload-bytes"]);
    const env: Record<string, string> = {
      ...redis.env(),
      SERVICE_NAME: "bench-service",
      STREAM,
      CONSUMER_GROUP: GROUP,
      CONSUMER_NAME: "service-1",
      STREAM_START_ID: "0",
      LOG_LEVEL: "WARN",
    };
    const svc = cleanup.use(await startService({ env, waitReady: false }));
    try {
      const live = async (): Promise<number> => {
        const started = performance.now();
        const res = await svc.fetch("/health/live");
        await res.text();
        const ms = performance.now() - started;
        if (res.status !== 200) throw new Error(`/health/live answered ${res.status}`);
        return ms;
      };
      // Wait for HTTP (this also opens the keep-alive connection), then for consumption.
      const deadline = Date.now() + 30_000;
      while (true) {
        try {
          await live();
          break;
        } catch (err) {
          if (Date.now() > deadline || svc.status) throw err;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      while ((await groupState(admin, STREAM, GROUP)).entriesRead === 0) {
        if (Date.now() > deadline || svc.status) throw new Error("consumption did not start");
        await new Promise((r) => setTimeout(r, 10));
      }
      const loaded: number[] = [];
      for (let i = 0; i < flags["health-requests"]; i++) loaded.push(await live());
      const after = await groupState(admin, STREAM, GROUP);
      const backlogAfter = (after.lag ?? 0) + after.pending;
      log(`health: ${loaded.length} requests under load; backlog after: ${fmt(backlogAfter)}`);
      await measureDrain({
        client: admin,
        stream: STREAM,
        group: GROUP,
        total: flags.entries,
        spawnedAt: performance.now(),
        isAlive: () => svc.status === undefined,
      });
      const idle: number[] = [];
      for (let i = 0; i < flags["health-requests"]; i++) idle.push(await live());
      health = { loaded, idle, loadedThroughout: backlogAfter > 0, backlogAfter };
      healthRssKiB = peakRssKiB(svc.pid);
    } catch (err) {
      throw new Error(`health: ${err}\n--- service output ---\n${svc.output()}`);
    } finally {
      await svc.stop(15_000);
    }
  }

  report(drains, latencies, health, healthRssKiB);
}

function report(
  drains: Map<string, DrainFigures>,
  latencies: Map<string, LatencyFigures>,
  health: HealthFigures | undefined,
  healthRssKiB: number,
): void {
  const rows: string[][] = [["metric", "service", "baseline", "ratio"]];
  const ratio = (a: number, b: number) => fmt(a / b, 2);
  const row = (name: string, s: number, b: number, digits = 0, r = true) =>
    rows.push([name, fmt(s, digits), fmt(b, digits), r ? ratio(s, b) : ""]);
  const ds = drains.get("service");
  const db = drains.get("baseline");
  if (ds && db) {
    row(
      `drain throughput, ${fmt(flags.entries)} entries${
        flags.routes ? " (service with ROUTES)" : ""
      }, median of ${Math.max(1, flags.runs)} (entries/s)`,
      ds.rate,
      db.rate,
    );
    row("drain time, from first consumption (s)", ds.durationMs / 1000, db.durationMs / 1000, 2);
    row("drain time, from process spawn (s)", ds.wallMs / 1000, db.wallMs / 1000, 2);
    row(
      "consumer CPU per 1,000 entries (ms)",
      (ds.consumerCpuMs / ds.entries) * 1000,
      (db.consumerCpuMs / db.entries) * 1000,
      1,
    );
    row(
      "redis CPU per 1,000 entries (ms)",
      (ds.redisCpuMs / ds.entries) * 1000,
      (db.redisCpuMs / db.entries) * 1000,
      1,
    );
    row("entries per XREADGROUP call", flags.entries / ds.reads, flags.entries / db.reads, 1);
    row(
      "entries per acknowledging call (EVALSHA/XACK)",
      flags.entries / ds.ackCalls,
      flags.entries / db.ackCalls,
      1,
    );
    row("peak RSS during drain (MiB)", ds.peakRssKiB / 1024, db.peakRssKiB / 1024, 1);
  }
  const ls = latencies.get("service");
  const lb = latencies.get("baseline");
  if (ls && lb) {
    const label = `${flags.rate}/s for ${flags.seconds} s`;
    for (const p of [50, 90, 99]) {
      row(
        `e2e XADD→ack latency p${p}, ${label} (ms)`,
        percentile(ls.latenciesMs, p),
        percentile(lb.latenciesMs, p),
        2,
      );
    }
    row(
      "e2e XADD→ack latency max (ms)",
      Math.max(...ls.latenciesMs),
      Math.max(...lb.latenciesMs),
      2,
    );
    row("e2e entries measured / missing", ls.measured, lb.measured, 0, false);
    rows[rows.length - 1][3] = `missing ${ls.missing} / ${lb.missing}`;
    row("peak RSS during latency run (MiB)", ls.peakRssKiB / 1024, lb.peakRssKiB / 1024, 1);
  }
  if (health) {
    const n = health.loaded.length;
    const h = (name: string, v: number) => rows.push([name, fmt(v, 2), "n/a", ""]);
    h(`GET /health/live p50, draining (ms, ${n} sequential)`, percentile(health.loaded, 50));
    h("GET /health/live p99, draining (ms)", percentile(health.loaded, 99));
    h("GET /health/live max, draining (ms)", Math.max(...health.loaded));
    h("GET /health/live p50, idle (ms)", percentile(health.idle, 50));
    h("GET /health/live p99, idle (ms)", percentile(health.idle, 99));
    rows.push(["peak RSS, health run (MiB)", fmt(healthRssKiB / 1024, 1), "n/a", ""]);
  }
  console.log("");
  console.log(table(rows));
  console.log("");
  if (health && !health.loadedThroughout) {
    console.log(
      "note: the backlog was drained before the /health/live requests under load ended; " +
        "use more --entries",
    );
  }
  if (ds && db) {
    const r = ds.rate / db.rate;
    const target = flags.routes ? ROUTES_TARGET_RATIO : TARGET_RATIO;
    const verdict = r >= target ? "meets" : "BELOW";
    const p99 = ls && lb
      ? `; e2e p99 ${fmt(percentile(ls.latenciesMs, 99), 2)} vs ${
        fmt(percentile(lb.latenciesMs, 99), 2)
      } ms`
      : "";
    const live = health
      ? `; /health/live p99 while draining ${fmt(percentile(health.loaded, 99), 2)} ms`
      : "";
    console.log(
      `summary: service drains ${fmt(ds.rate)}/s = ${fmt(r * 100)}% of the baseline's ` +
        `${fmt(db.rate)}/s (${verdict} the ${target * 100}% target)${p99}${live}`,
    );
  }
}

if (import.meta.main) {
  if (flags.help) {
    console.log(
      "deno task bench [--entries N] [--aggregates N] [--payload-bytes N] [--runs N] [--rate N]\n" +
        "                [--seconds S] [--warmup-ms MS] [--health-requests N]\n" +
        "                [--only drain,latency,health] [--baseline-count N] [--routes]\n" +
        "                [--service-env K=V,K=V]",
    );
    Deno.exit(0);
  }
  const cleanup = new Cleanup();
  let interrupted = false;
  const onSignal = async () => {
    if (interrupted) Deno.exit(130);
    interrupted = true;
    log("interrupted: stopping processes");
    await cleanup.run();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const started = performance.now();
  let code = 0;
  try {
    await run(cleanup);
    log(`done in ${fmt((performance.now() - started) / 1000, 1)} s`);
  } catch (err) {
    console.error(`bench failed: ${err instanceof Error ? err.message : err}`);
    code = 1;
  } finally {
    for (const err of await cleanup.run()) console.error("cleanup step failed:", err);
  }
  Deno.exit(code);
}
