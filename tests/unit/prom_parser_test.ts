/**
 * Unit tests of the strict Prometheus text-format parser of tests/support/prom_parser.ts: it
 * accepts well-formed expositions (including the service's own registry as prom-client renders
 * it under Deno) and rejects each kind of malformed input with the line at fault.
 */
import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
  assertThrows,
} from "../support/assert.ts";
import {
  parsePrometheusText,
  PromParseError,
  sampleValue,
  sumSamples,
} from "../support/prom_parser.ts";
import { Metrics } from "../../src/metrics.ts";

const GOOD = `# HELP http_requests_total Requests answered.\\nSecond line with a \\\\ backslash.
# TYPE http_requests_total counter
http_requests_total{method="GET",route="/health",status="200"} 3
http_requests_total{method="POST",route="other",status="404",} 1 1700000000000
# a plain comment
# TYPE temperature gauge
temperature{place="a \\"quoted\\" \\\\ back\\nslash"} -1.5e3
temperature{place="b"} NaN
temperature{place="c"} +Inf

# TYPE latency_seconds histogram
latency_seconds_bucket{route="/x",le="0.1"} 1
latency_seconds_bucket{route="/x",le="1"} 2
latency_seconds_bucket{route="/x",le="+Inf"} 3
latency_seconds_sum{route="/x"} 4.5
latency_seconds_count{route="/x"} 3
latency_seconds_bucket{route="/y",le="0.1"} 0
latency_seconds_bucket{route="/y",le="+Inf"} 0
latency_seconds_sum{route="/y"} 0
latency_seconds_count{route="/y"} 0
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.2
rpc_seconds{quantile="0.99"} 0.9
rpc_seconds_sum 12
rpc_seconds_count 40
# TYPE empty_histogram histogram
# TYPE mystery untyped
mystery 7
`;

Deno.test("parsePrometheusText() reads families, labels, escapes, timestamps and specials", () => {
  const families = parsePrometheusText(GOOD);
  assertEquals(
    [...families.keys()],
    [
      "http_requests_total",
      "temperature",
      "latency_seconds",
      "rpc_seconds",
      "empty_histogram",
      "mystery",
    ],
  );
  const http = families.get("http_requests_total")!;
  assertEquals(http.type, "counter");
  assertEquals(http.help, "Requests answered.\nSecond line with a \\ backslash.");
  assertEquals(http.samples[1].labels, { method: "POST", route: "other", status: "404" });
  assertEquals(http.samples[1].timestamp, 1700000000000);
  assertEquals(
    sampleValue(families, "http_requests_total", {
      method: "GET",
      route: "/health",
      status: "200",
    }),
    3,
  );
  assertEquals(sumSamples(families, "http_requests_total"), 4);
  const temps = families.get("temperature")!.samples;
  assertEquals(temps[0].labels.place, 'a "quoted" \\ back\nslash');
  assertEquals(temps[0].value, -1500);
  assert(Number.isNaN(temps[1].value));
  assertEquals(temps[2].value, Infinity);
  assertEquals(sampleValue(families, "latency_seconds_count", { route: "/x" }), 3);
  assertEquals(sampleValue(families, "latency_seconds_bucket", { route: "/x", le: "1" }), 2);
  assertEquals(sampleValue(families, "rpc_seconds_count"), 40);
  assertEquals(families.get("empty_histogram")!.samples.length, 0);
  assertEquals(sampleValue(families, "mystery"), 7);
  assertEquals(sampleValue(families, "absent_metric"), undefined);
});

Deno.test("parsePrometheusText() accepts an empty exposition", () => {
  assertEquals(parsePrometheusText("").size, 0);
});

const BAD: [string, string, RegExp][] = [
  ["sample without TYPE", "foo 1\n", /belongs to no family/],
  ["sample of another family's prefix", "# TYPE foo gauge\nfoo_bar 1\n", /belongs to no family/],
  ["invalid metric name", "# TYPE 1foo gauge\n", /invalid metric name/],
  ["invalid character in a sample name", "# TYPE foo gauge\nfoo-bar 1\n", /expected a blank/],
  ["unknown type", "# TYPE foo meter\n", /unknown metric type/],
  ["second TYPE", "# TYPE foo gauge\n# TYPE foo gauge\n", /second TYPE/],
  ["second HELP", "# HELP foo a\n# HELP foo b\n# TYPE foo gauge\n", /second HELP/],
  ["HELP without TYPE", "# HELP foo a\n", /without a TYPE/],
  [
    "TYPE after samples",
    "# TYPE foo_count gauge\nfoo_count 1\n# TYPE foo histogram\n",
    /after samples/,
  ],
  ["invalid HELP escape", "# HELP foo a\\tb\n# TYPE foo gauge\n", /invalid escape/],
  ["invalid label escape", '# TYPE foo gauge\nfoo{a="x\\ty"} 1\n', /invalid escape/],
  ["unterminated label value", '# TYPE foo gauge\nfoo{a="x} 1\n', /unterminated/],
  ["unquoted label value", "# TYPE foo gauge\nfoo{a=x} 1\n", /expected "/],
  ["missing comma between labels", '# TYPE foo gauge\nfoo{a="x" b="y"} 1\n', /expected , or }/],
  ["invalid label name", '# TYPE foo gauge\nfoo{1a="x"} 1\n', /invalid label name/],
  ["reserved label name", '# TYPE foo gauge\nfoo{__name__="x"} 1\n', /reserved label/],
  ["label given twice", '# TYPE foo gauge\nfoo{a="x",a="y"} 1\n', /given twice/],
  ["invalid value", "# TYPE foo gauge\nfoo abc\n", /invalid value/],
  ["missing value", "# TYPE foo gauge\nfoo\n", /expected a blank/],
  ["invalid timestamp", "# TYPE foo gauge\nfoo 1 1.5\n", /invalid timestamp/],
  ["extra token", "# TYPE foo gauge\nfoo 1 2 3\n", /expected "value \[timestamp\]"/],
  [
    "duplicate series",
    '# TYPE foo gauge\nfoo{a="1",b="2"} 1\nfoo{b="2",a="1"} 2\n',
    /duplicate series/,
  ],
  [
    "negative counter",
    "# TYPE foo_total counter\nfoo_total -1\n",
    /counter foo_total has value -1/,
  ],
  ["interleaved families", "# TYPE a gauge\n# TYPE b gauge\nb 1\na 1\n", /not in one group/],
  ["no final line feed", "# TYPE foo gauge\nfoo 1", /last line must end/],
  ["carriage return", "# TYPE foo gauge\r\nfoo 1\r\n", /carriage return/],
  [
    "histogram bucket without le",
    "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",
    /bucket without le/,
  ],
  [
    "histogram without +Inf bucket",
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
    /no le="\+Inf" bucket/,
  ],
  [
    "histogram buckets not cumulative",
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="2"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n',
    /is below/,
  ],
  [
    "histogram _count differs from +Inf bucket",
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
    /differs from the \+Inf bucket/,
  ],
  [
    "histogram without _sum",
    '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 2\n',
    /has no _sum/,
  ],
  [
    "histogram without _count",
    '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 2\n',
    /has no _count/,
  ],
  ["histogram plain sample", "# TYPE h histogram\nh 1\n", /lacks _bucket/],
  ["invalid le", '# TYPE h histogram\nh_bucket{le="big"} 1\n', /invalid le/],
  ["summary without quantile", "# TYPE s summary\ns 1\ns_sum 1\ns_count 1\n", /quantile label/],
  ["summary quantile above 1", '# TYPE s summary\ns{quantile="2"} 1\n', /invalid quantile/],
  ["summary without _count", '# TYPE s summary\ns{quantile="0.5"} 1\ns_sum 1\n', /lacks _sum/],
];

for (const [what, text, expected] of BAD) {
  Deno.test(`parsePrometheusText() rejects ${what}`, () => {
    const err = assertThrows(() => parsePrometheusText(text), PromParseError);
    assertMatch(err.message, expected);
    assertMatch(err.message, /^line \d+: /);
  });
}

Deno.test("parsePrometheusText() names the line at fault", () => {
  const err = assertThrows(
    () => parsePrometheusText('# TYPE a gauge\na 1\n\na{x="1"} nope\n'),
    PromParseError,
  );
  assertEquals(err.line, 4);
  assertStringIncludes(err.message, "line 4:");
});

Deno.test("parsePrometheusText() accepts the service's registry as prom-client renders it", async () => {
  const metrics = new Metrics({ processMetrics: false });
  metrics.httpRequests.inc({ method: "GET", route: "/health", status: "200" });
  metrics.httpDuration.observe({ route: "/health" }, 0.003);
  metrics.httpDuration.observe({ route: "other" }, 2);
  metrics.consumed.inc({ stream: 'odd "stream"\\name', event: "e\nx", outcome: "acked" }, 2);
  metrics.state(true, "half_open");
  metrics.command(0.0004, true);
  const { body, contentType } = await metrics.render();
  assertMatch(contentType, /^text\/plain; version=0\.0\.4/);
  const families = parsePrometheusText(body);
  assertEquals(families.get("http_request_duration_seconds")?.type, "histogram");
  assertEquals(sampleValue(families, "http_request_duration_seconds_count", { route: "other" }), 1);
  assertEquals(
    sampleValue(families, "stream_messages_consumed_total", {
      stream: 'odd "stream"\\name',
      event: "e\nx",
      outcome: "acked",
    }),
    2,
  );
  assertEquals(sampleValue(families, "redis_circuit_state"), 1);
  assertEquals(sampleValue(families, "redis_command_duration_seconds_count"), 1);
});
