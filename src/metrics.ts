/**
 * Metrics registry and instruments (README: Metrics), on `prom-client`. One
 * `Metrics` object per process, passed to the parts that report; `/metrics`
 * renders `registry`. Route labels are route patterns, never raw paths.
 */
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  type Metric,
  Registry,
} from "npm:prom-client@^15.1.3";
import type { CircuitState } from "./redis/breaker.ts";
import type { CommandObserver } from "./redis/connection.ts";

/** Consumption outcomes of `stream_messages_consumed_total`. */
export type Outcome = "acked" | "retried" | "dead_lettered" | "duplicate";

const CIRCUIT_VALUE: Record<CircuitState, number> = { closed: 0, half_open: 1, open: 2 };

/** prom-client's process metrics that read /proc/self on Linux. */
const PROC_METRICS = [
  "process_resident_memory_bytes",
  "process_virtual_memory_bytes",
  "process_heap_bytes",
  "process_open_fds",
  "process_max_fds",
];

/**
 * On Linux prom-client reads memory and file descriptors from /proc/self, which Deno allows
 * only with --allow-all; without it prom-client silently reports 0. Then drop those series
 * and report resident memory from `Deno.memoryUsage()`, which needs no permission.
 */
function replaceProcReaders(registry: Registry): void {
  try {
    Deno.readTextFileSync("/proc/self/status");
    return; // readable: prom-client's own collectors work
  } catch {
    // not Linux, or not permitted
  }
  for (const name of PROC_METRICS) registry.removeSingleMetric(name);
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers: [registry],
    collect() {
      this.set(Deno.memoryUsage().rss);
    },
  });
}

/** What `FastHistogram.get()` gives the registry (the shape of prom-client's). */
export interface HistogramSeries {
  name: string;
  help: string;
  type: "histogram";
  aggregator: "sum";
  values: { labels: Record<string, string | number>; value: number; metricName: string }[];
}

/**
 * A histogram without labels for a value observed per handled entry: `observe`
 * is a short bucket scan and three additions (prom-client's costs a label hash
 * and a lookup per call, a few percent of a drain). Rendered by the registry
 * exactly like a prom-client histogram (`_bucket` with `le`, `_sum`, `_count`).
 */
export class FastHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram" as const;
  readonly aggregator = "sum" as const;
  readonly #bounds: readonly number[];
  /** Per bucket (not cumulative), the last one for values above every bound. */
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(options: { name: string; help: string; buckets: number[]; registers: Registry[] }) {
    this.name = options.name;
    this.help = options.help;
    this.#bounds = [...options.buckets].sort((a, b) => a - b);
    this.#counts = new Float64Array(this.#bounds.length + 1);
    // The registry only reads name, help, type, aggregator, get() and reset().
    for (const r of options.registers) r.registerMetric(this as unknown as Metric);
  }

  /** Records one value. */
  observe(value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    const b = this.#bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    this.#counts[i]++;
    this.#sum += value;
    this.#count++;
  }

  /** The series, as prom-client's `Histogram.get()` gives them. */
  get(): Promise<HistogramSeries> {
    const values: HistogramSeries["values"] = [];
    let acc = 0;
    this.#bounds.forEach((le, i) => {
      acc += this.#counts[i];
      values.push({ labels: { le }, value: acc, metricName: `${this.name}_bucket` });
    });
    values.push(
      { labels: { le: "+Inf" }, value: this.#count, metricName: `${this.name}_bucket` },
      { labels: {}, value: this.#sum, metricName: `${this.name}_sum` },
      { labels: {}, value: this.#count, metricName: `${this.name}_count` },
    );
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    });
  }

  /** Back to no observations. */
  reset(): void {
    this.#counts.fill(0);
    this.#sum = 0;
    this.#count = 0;
  }
}

/** Options of `Metrics`. */
export interface MetricsOptions {
  /** Collect process metrics (CPU, memory, heap, event-loop lag). Default true. */
  processMetrics?: boolean;
  /** Labels added to every series. */
  defaultLabels?: Record<string, string>;
}

/** One rendering of the exposition text. */
export interface Rendered {
  body: string;
  contentType: string;
}

/** How long a rendering of /metrics is served again (ms). */
export const RENDER_REUSE_MS = 1000;

/** Every instrument of the service. */
export class Metrics implements CommandObserver {
  readonly registry = new Registry();
  readonly httpRequests: Counter<"method" | "route" | "status">;
  readonly httpDuration: Histogram<"route">;
  readonly redisUp: Gauge;
  readonly redisCommandDuration: Histogram;
  readonly redisCircuitState: Gauge;
  readonly consumed: Counter<"stream" | "event" | "outcome">;
  readonly processingDuration: FastHistogram;
  readonly consumerLag: Gauge<"stream" | "group">;
  readonly pendingMessages: Gauge<"stream" | "group">;
  readonly published: Counter<"stream">;
  readonly inFlight: Gauge;
  /** STREAM_PARTITIONS above 1: partitions of each stream this instance owns (reads). */
  readonly partitionsOwned: Gauge<"stream">;
  readonly deletedPending: Counter<"stream">;
  readonly dlqLength: Gauge<"stream">;
  readonly deadLetters: Counter<"stream">;
  readonly settleFailures: Counter<"stream" | "reason">;
  readonly loopErrors: Counter<"loop">;

  constructor(options: MetricsOptions = {}) {
    const registers = [this.registry];
    if (options.defaultLabels) this.registry.setDefaultLabels(options.defaultLabels);
    this.httpRequests = new Counter({
      name: "http_requests_total",
      help: "HTTP requests answered, by method, route pattern and status",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.httpDuration = new Histogram({
      name: "http_request_duration_seconds",
      help: "HTTP request duration by route pattern",
      labelNames: ["route"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.redisUp = new Gauge({
      name: "redis_up",
      help: "1 while the Redis connection is up, else 0",
      registers,
    });
    this.redisCommandDuration = new Histogram({
      name: "redis_command_duration_seconds",
      help: "Duration of Redis operations on the command connection",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    });
    this.redisCircuitState = new Gauge({
      name: "redis_circuit_state",
      help: "Redis circuit breaker: 0 closed, 1 half-open, 2 open",
      registers,
    });
    this.consumed = new Counter({
      name: "stream_messages_consumed_total",
      help: "Stream entries consumed, by stream, event type and outcome",
      labelNames: ["stream", "event", "outcome"],
      registers,
    });
    this.processingDuration = new FastHistogram({
      name: "stream_processing_duration_seconds",
      help: "Handler duration per entry",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.consumerLag = new Gauge({
      name: "stream_consumer_lag",
      help: "Entries in the stream not yet delivered to the group (XINFO GROUPS lag)",
      labelNames: ["stream", "group"],
      registers,
    });
    this.pendingMessages = new Gauge({
      name: "stream_pending_messages",
      help: "Entries delivered to the group and not yet acknowledged",
      labelNames: ["stream", "group"],
      registers,
    });
    this.published = new Counter({
      name: "stream_messages_published_total",
      help: "Entries published by this service, by stream",
      labelNames: ["stream"],
      registers,
    });
    this.inFlight = new Gauge({
      name: "stream_in_flight",
      help: "Entries handed to handlers and not yet acknowledged",
      registers,
    });
    this.partitionsOwned = new Gauge({
      name: "stream_partitions_owned",
      help: "Partitions of the stream whose lease this instance holds (STREAM_PARTITIONS > 1)",
      labelNames: ["stream"],
      registers,
    });
    this.deletedPending = new Counter({
      name: "stream_pending_deleted_total",
      help: "Pending entries found deleted or trimmed, acknowledged without handling",
      labelNames: ["stream"],
      registers,
    });
    this.dlqLength = new Gauge({
      name: "stream_dead_letter_length",
      help: "Length of the dead-letter stream, by source stream",
      labelNames: ["stream"],
      registers,
    });
    this.deadLetters = new Counter({
      name: "stream_dead_letters_total",
      help:
        "Entries this instance wrote to the dead-letter stream, by source stream (0 from start)",
      labelNames: ["stream"],
      registers,
    });
    this.settleFailures = new Counter({
      name: "stream_settle_failures_total",
      help: "Entries left pending because a write of their settle would fail, by stream and reason",
      labelNames: ["stream", "reason"],
      registers,
    });
    this.loopErrors = new Counter({
      name: "stream_loop_errors_total",
      help: "Failed turns of the consumer's background loops, by loop",
      labelNames: ["loop"],
      registers,
    });
    if (options.processMetrics !== false) {
      collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 20 });
      replaceProcReaders(this.registry);
    }
  }

  /** CommandObserver: one Redis operation finished. */
  command(durationSeconds: number, _ok: boolean): void {
    this.redisCommandDuration.observe(durationSeconds);
  }

  /** CommandObserver: connection or breaker state changed. */
  state(up: boolean, circuit: CircuitState): void {
    this.redisUp.set(up ? 1 : 0);
    this.redisCircuitState.set(CIRCUIT_VALUE[circuit]);
  }

  /**
   * The exposition text and its content type. Concurrent scrapes share one
   * rendering, and a rendering is reused for `RENDER_REUSE_MS` (one second):
   * a flood of scrapers costs at most one rendering a second, so it cannot
   * starve the probes of CPU.
   */
  render(now: number = Date.now()): Promise<Rendered> {
    const last = this.#rendering;
    if (last && (last.pending || now - last.at < RENDER_REUSE_MS)) return last.promise;
    const rendering: { at: number; pending: boolean; promise: Promise<Rendered> } = {
      at: now,
      pending: true,
      promise: this.registry.metrics().then(
        (body) => ({ body, contentType: this.registry.contentType }),
      ),
    };
    rendering.promise.then(
      () => (rendering.pending = false),
      () => {
        // A failed rendering is not reused.
        if (this.#rendering === rendering) this.#rendering = undefined;
      },
    );
    this.#rendering = rendering;
    return rendering.promise;
  }

  #rendering?: { at: number; pending: boolean; promise: Promise<Rendered> };
}
