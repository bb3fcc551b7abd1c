/**
 * `/health/live` while a flood of Prometheus scrapers hits `/metrics` (README, "Failure rules":
 * scrapes cannot starve probes): spawns the service on a throwaway redis-server, runs
 * `--scrapers N` (200) concurrent loops of `GET /metrics` for `--seconds S` (10), and meanwhile
 * one prober that sends `GET /health/live` every 20 ms; prints the probe's p50 / p99 / max and how
 * many scrapes were answered. A benchmark, not a test: `deno run --allow-all bench/scrape.ts`.
 *
 * @module
 */

import { Cleanup } from "../tests/support/cleanup.ts";
import { startRedis } from "../tests/support/redis_server.ts";
import { startService } from "../tests/support/service.ts";
import { fmt, parseFlags, percentile, table } from "./support.ts";

const flags = parseFlags(Deno.args, { scrapers: 200, seconds: 10, help: false });

async function run(cleanup: Cleanup): Promise<void> {
  const redis = cleanup.use(await startRedis());
  const svc = cleanup.use(
    await startService({
      env: { ...redis.env(), SERVICE_NAME: "bench-scrape", LOG_LEVEL: "WARN" },
    }),
  );
  const until = performance.now() + flags.seconds * 1000;
  let scrapes = 0;
  let scrapeErrors = 0;
  const scraper = async () => {
    while (performance.now() < until) {
      try {
        const res = await svc.fetch("/metrics");
        await res.text();
        if (res.ok) scrapes++;
        else scrapeErrors++;
      } catch {
        scrapeErrors++;
      }
    }
  };
  const probes: number[] = [];
  let probeFailures = 0;
  const prober = async () => {
    while (performance.now() < until) {
      const started = performance.now();
      try {
        const res = await svc.fetch("/health/live");
        await res.text();
        if (res.status === 200) probes.push(performance.now() - started);
        else probeFailures++;
      } catch {
        probeFailures++;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await Promise.all([prober(), ...Array.from({ length: flags.scrapers }, scraper)]);
  probes.sort((a, b) => a - b);
  console.log(table([
    ["figure", "value"],
    ["concurrent scrapers", fmt(flags.scrapers)],
    ["seconds", fmt(flags.seconds)],
    ["scrapes answered (per s)", fmt(scrapes / flags.seconds)],
    ["scrape errors", fmt(scrapeErrors)],
    ["/health/live probes", fmt(probes.length)],
    ["/health/live failures", fmt(probeFailures)],
    ["/health/live p50 (ms)", fmt(percentile(probes, 50), 1)],
    ["/health/live p99 (ms)", fmt(percentile(probes, 99), 1)],
    ["/health/live max (ms)", fmt(probes[probes.length - 1] ?? NaN, 1)],
  ]));
}

if (flags.help) {
  console.log("deno run --allow-all bench/scrape.ts [--scrapers N] [--seconds S]");
} else {
  await using cleanup = new Cleanup();
  await run(cleanup);
}
