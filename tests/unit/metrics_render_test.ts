/**
 * `Metrics.render()` under a scrape flood: concurrent scrapes share one
 * rendering, and a rendering is reused for a second, so scrapers cannot take
 * the CPU the probes need. Also the series that exist from the start, and the
 * per-entry histogram rendered like prom-client's.
 */
import { Histogram, Registry } from "prom-client";
import { assertEquals, assertStringIncludes, assertThrows } from "../support/assert.ts";
import { FastHistogram, Metrics, RENDER_REUSE_MS } from "../../src/metrics.ts";

/** Counts the renderings of `metrics`' registry. */
function countRenderings(metrics: Metrics): () => number {
  let n = 0;
  const original = metrics.registry.metrics.bind(metrics.registry);
  metrics.registry.metrics = () => {
    n++;
    return original();
  };
  return () => n;
}

Deno.test("Metrics.render() shares one rendering among 200 concurrent scrapes", async () => {
  const metrics = new Metrics({ processMetrics: false });
  const renderings = countRenderings(metrics);
  const now = 1_000_000;
  const bodies = await Promise.all(Array.from({ length: 200 }, () => metrics.render(now)));
  assertEquals(renderings(), 1);
  assertEquals(new Set(bodies.map((b) => b.body)).size, 1);
});

Deno.test("Metrics.render() renders again only after RENDER_REUSE_MS", async () => {
  const metrics = new Metrics({ processMetrics: false });
  const renderings = countRenderings(metrics);
  const t0 = 1_000_000;
  await metrics.render(t0);
  metrics.published.inc({ stream: "s" });
  const reused = await metrics.render(t0 + RENDER_REUSE_MS - 1);
  assertEquals(renderings(), 1);
  assertEquals(reused.body.includes('stream_messages_published_total{stream="s"} 1'), false);
  const fresh = await metrics.render(t0 + RENDER_REUSE_MS);
  assertEquals(renderings(), 2);
  assertStringIncludes(fresh.body, 'stream_messages_published_total{stream="s"} 1');
});

Deno.test("Metrics.render() does not reuse a failed rendering", async () => {
  const metrics = new Metrics({ processMetrics: false });
  const original = metrics.registry.metrics.bind(metrics.registry);
  let fail = true;
  metrics.registry.metrics = () => fail ? Promise.reject(new Error("boom")) : original();
  const failed = await metrics.render(0).then(() => "rendered", (e: Error) => e.message);
  assertEquals(failed, "boom");
  fail = false;
  assertStringIncludes((await metrics.render(1)).body, "# HELP");
});

Deno.test("FastHistogram renders exactly like a prom-client histogram of the same values", async () => {
  const buckets = [0.001, 0.01, 0.1, 1];
  const values = [0, 0.0005, 0.001, 0.002, 0.05, 0.1, 0.5, 3, 7.25];
  for (const defaultLabels of [undefined, { service: "svc" }]) {
    const render = async (fast: boolean) => {
      const registry = new Registry();
      if (defaultLabels) registry.setDefaultLabels(defaultLabels);
      const options = { name: "h_seconds", help: "help text", buckets, registers: [registry] };
      const h = fast ? new FastHistogram(options) : new Histogram(options);
      for (const v of values) h.observe(v);
      return {
        text: await registry.metrics(),
        // The same series (prom-client adds an empty exemplar to its buckets).
        json: JSON.parse(
          JSON.stringify(
            await registry.getMetricsAsJSON(),
            (k, v) => k === "exemplar" ? undefined : v,
          ),
        ),
      };
    };
    assertEquals(await render(true), await render(false));
  }
});

Deno.test("FastHistogram rejects a value that is not a finite number", () => {
  const h = new FastHistogram({ name: "h", help: "h", buckets: [1], registers: [] });
  assertThrows(() => h.observe(NaN), TypeError);
  assertThrows(() => h.observe(Infinity), TypeError);
});
