/**
 * `Metrics.render()` under a scrape flood: concurrent scrapes share one
 * rendering, and a rendering is reused for a second, so scrapers cannot take
 * the CPU the probes need. Also the series that exist from the start.
 */
import { assertEquals, assertStringIncludes } from "../support/assert.ts";
import { Metrics, RENDER_REUSE_MS } from "../../src/metrics.ts";

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
