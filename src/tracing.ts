/**
 * Traces (`TRACE_ENABLED`): spans made with `@opentelemetry/api` and exported by Deno's built-in
 * OpenTelemetry support, which is switched on at process start by `OTEL_DENO=true` and the
 * `OTEL_EXPORTER_OTLP_*` / `OTEL_SERVICE_NAME` variables (Deno registers its tracer provider
 * and context manager with the API; `Deno.serve` requests get server spans of their own).
 *
 * The W3C trace context travels in a stream entry's `headers` (`traceparent`, `tracestate`), so
 * the consumer's span of an entry continues the trace of the request that published it. The
 * codec is written here rather than taken from the global propagator, so that it behaves the
 * same whatever propagator (if any) the runtime registered.
 *
 * Disabled, every helper is a pass-through: no span, no context lookup, no allocation per call.
 *
 * @module
 */
import {
  type Attributes,
  type Context,
  context,
  createTraceState,
  isSpanContextValid,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "npm:@opentelemetry/api@^1.9.0";

/** Kind of a span, by name. */
export type SpanKindName = "internal" | "server" | "client" | "producer" | "consumer";

const KINDS: Record<SpanKindName, SpanKind> = {
  internal: SpanKind.INTERNAL,
  server: SpanKind.SERVER,
  client: SpanKind.CLIENT,
  producer: SpanKind.PRODUCER,
  consumer: SpanKind.CONSUMER,
};

/** Options of `Tracing.withSpan`. */
export interface SpanOptions {
  /** Default `internal`. */
  kind?: SpanKindName;
  attributes?: Attributes;
  /**
   * Headers of a received message (a stream entry's `headers`): the span's parent is their
   * `traceparent`, and without a valid one the span starts a new trace (it never inherits the
   * active context). Absent: the parent is the active span, if any.
   */
  parentHeaders?: Readonly<Record<string, string | undefined>>;
}

/** Tracing helpers; see `createTracing`. */
export interface Tracing {
  /** Whether spans are made at all. */
  readonly enabled: boolean;
  /**
   * Runs `fn` inside a new active span and ends the span when `fn` settles. When `fn` throws,
   * the exception is recorded on the span, its status becomes ERROR, and the error is rethrown.
   * Disabled: just runs `fn(undefined)`.
   */
  withSpan<T>(
    name: string,
    options: SpanOptions,
    fn: (span: Span | undefined) => T | Promise<T>,
  ): Promise<T>;
  /**
   * Writes `traceparent` (and `tracestate` when there is one) of the span in `ctx` (default:
   * the active context) into `headers` and returns `headers`. Nothing is written when disabled
   * or when there is no valid span.
   */
  inject(headers: Record<string, string>, ctx?: Context): Record<string, string>;
  /**
   * The context whose (remote) parent span is the `traceparent` of `headers`, or undefined
   * when disabled or when `headers` carry no valid `traceparent`.
   */
  extract(headers: Readonly<Record<string, string | undefined>>): Context | undefined;
  /** The active span (undefined when disabled or when there is none). */
  activeSpan(): Span | undefined;
}

/** Options of `createTracing`. */
export interface TracingOptions {
  enabled: boolean;
  /** Instrumentation scope name of the tracer (the service name, say). */
  serviceName: string;
  /** Instrumentation scope version. */
  version?: string;
}

const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** `00-<traceId>-<spanId>-<flags>` of a span context (W3C Trace Context, version 00). */
export function formatTraceparent(sc: SpanContext): string {
  const flags = (sc.traceFlags & 0xff).toString(16).padStart(2, "0");
  return `00-${sc.traceId}-${sc.spanId}-${flags}`;
}

/**
 * Parses a W3C `traceparent` (and an optional `tracestate`) into a remote span context, or
 * undefined when it is not valid: version `ff`, extra fields on version 00, all-zero ids or
 * upper-case hex are rejected; later versions are read by their version-00 prefix.
 */
export function parseTraceparent(
  traceparent: string | undefined,
  tracestate?: string,
): SpanContext | undefined {
  if (traceparent === undefined) return undefined;
  const m = TRACEPARENT_RE.exec(traceparent.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m;
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  const sc: SpanContext = {
    traceId,
    spanId,
    traceFlags: parseInt(flags, 16) & 0x01,
    isRemote: true,
  };
  if (!isSpanContextValid(sc)) return undefined;
  const state = tracestate?.trim();
  if (state) sc.traceState = createTraceState(state);
  return sc;
}

function errorOf(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

class DisabledTracing implements Tracing {
  readonly enabled = false;
  async withSpan<T>(
    _name: string,
    _options: SpanOptions,
    fn: (span: Span | undefined) => T | Promise<T>,
  ): Promise<T> {
    return await fn(undefined);
  }
  inject(headers: Record<string, string>): Record<string, string> {
    return headers;
  }
  extract(): Context | undefined {
    return undefined;
  }
  activeSpan(): Span | undefined {
    return undefined;
  }
}

class OtelTracing implements Tracing {
  readonly enabled = true;
  // A ProxyTracer of the API: it delegates to whichever provider is registered when a span
  // starts (Deno registers its own before user code runs).
  readonly #tracer: Tracer;

  constructor(options: TracingOptions) {
    this.#tracer = trace.getTracer(options.serviceName, options.version);
  }

  withSpan<T>(
    name: string,
    options: SpanOptions,
    fn: (span: Span | undefined) => T | Promise<T>,
  ): Promise<T> {
    const parent = options.parentHeaders
      ? this.extract(options.parentHeaders) ?? ROOT_CONTEXT
      : context.active();
    return this.#tracer.startActiveSpan(
      name,
      { kind: KINDS[options.kind ?? "internal"], attributes: options.attributes },
      parent,
      async (span) => {
        try {
          return await fn(span);
        } catch (err) {
          const error = errorOf(err);
          span.recordException(error);
          span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
          throw err;
        } finally {
          span.end();
        }
      },
    );
  }

  inject(headers: Record<string, string>, ctx: Context = context.active()): Record<string, string> {
    const sc = trace.getSpanContext(ctx);
    if (!sc || !isSpanContextValid(sc)) return headers;
    headers.traceparent = formatTraceparent(sc);
    const state = sc.traceState?.serialize();
    if (state) headers.tracestate = state;
    else delete headers.tracestate;
    return headers;
  }

  extract(headers: Readonly<Record<string, string | undefined>>): Context | undefined {
    const sc = parseTraceparent(headers.traceparent, headers.tracestate);
    return sc ? trace.setSpanContext(ROOT_CONTEXT, sc) : undefined;
  }

  activeSpan(): Span | undefined {
    return trace.getActiveSpan();
  }
}

/** The tracing disabled: every helper is a pass-through. */
export const NO_TRACING: Tracing = new DisabledTracing();

/** Tracing helpers; with `enabled: false` the shared pass-through `NO_TRACING`. */
export function createTracing(options: TracingOptions): Tracing {
  return options.enabled ? new OtelTracing(options) : NO_TRACING;
}

/**
 * Why traces would not leave the process although `TRACE_ENABLED=true`, or undefined when
 * Deno's exporter is on. Deno reads `OTEL_DENO` once at start and accepts only `true`.
 */
export function exporterProblem(env: Readonly<Record<string, string | undefined>>):
  | string
  | undefined {
  if (env.OTEL_DENO === "true") return undefined;
  return 'TRACE_ENABLED=true but OTEL_DENO is not "true": spans are made but not exported. ' +
    "Start the process with OTEL_DENO=true and the exporter variables " +
    "(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME)";
}

/**
 * Where Deno's exporter sends spans, for the start-up log line: protocol,
 * endpoint (its origin only: the URL could carry credentials) and service name.
 */
export function exporterSummary(
  env: Readonly<Record<string, string | undefined>>,
): { protocol: string; endpoint: string; serviceName: string } {
  return {
    protocol: env.OTEL_EXPORTER_OTLP_PROTOCOL ?? "http/protobuf",
    endpoint: URL.parse(env.OTEL_EXPORTER_OTLP_ENDPOINT ?? "http://localhost:4318")?.origin ??
      "(unparsable OTEL_EXPORTER_OTLP_ENDPOINT)",
    serviceName: env.OTEL_SERVICE_NAME ?? "unknown_service:deno (set OTEL_SERVICE_NAME)",
  };
}
