/**
 * Publisher: writes entries in the wire format (README: Stream entries) through the
 * connection manager's breaker, optionally once per idempotency key (the key
 * and the first publication's record are kept for DEDUP_TTL_S).
 */
import type { RedisLink } from "../redis/connection.ts";
import type { Metrics } from "../metrics.ts";
import type { Span } from "npm:@opentelemetry/api@^1.9.0";
import type { Tracing } from "../tracing.ts";
import { isoInZone, toFields } from "./entry.ts";
import { PUBLISH_ONCE } from "./scripts.ts";
import { KeySchema, partitionKey, partitionOf } from "./keys.ts";

/** What to publish. */
export interface PublishRequest {
  stream: string;
  event: string;
  aggregateId: string;
  payload: Record<string, unknown>;
  correlationId: string;
  /** Extra headers (e.g. `traceparent`). */
  headers?: Record<string, string>;
  /** Publish once per key within the dedup TTL. */
  idempotencyKey?: string;
}

/** What was published (or, for a repeated idempotency key, first published). */
export interface PublishResult {
  id: string;
  /** The key written: the stream, or with partitions its partition key `{S:i}`. */
  stream: string;
  event: string;
  aggregateId: string;
  correlationId: string;
  /** False when an earlier publication with the same idempotency key was returned. */
  published: boolean;
}

/** Options of `Publisher`. */
export interface PublisherOptions {
  connection: RedisLink;
  serviceName: string;
  /** IANA zone of the `timestamp` field. Default `UTC`. */
  timezone?: string;
  /** Seconds an idempotency key is remembered. Default 86400. */
  dedupTtlS?: number;
  /** Where idempotency records live. Default: the schema of `serviceName`. */
  keys?: KeySchema;
  /**
   * How long a publish waits for Redis' answer once sent (ms); past it the
   * publish fails with `OutcomeUnknownError`. Default: the connection's own
   * command deadline (CONNECTION_TIMEOUT).
   */
  deadlineMs?: number;
  metrics?: Metrics;
  /** Tracing: a PRODUCER span per publish, its `traceparent` in the entry's headers. */
  tracing?: Tracing;
  /**
   * STREAM_PARTITIONS: above 1, an event for stream `S` goes to the partition key `{S:i}` with
   * i = FNV-1a(aggregateId) mod N (src/stream/keys.ts). Default: 1 (the stream itself).
   */
  partitions?: number;
}

/** Publishes events to streams. */
export class Publisher {
  readonly #opts: PublisherOptions;
  readonly #keys: KeySchema;
  readonly #deadline: { deadlineMs?: number };

  constructor(options: PublisherOptions) {
    this.#opts = options;
    this.#deadline = { deadlineMs: options.deadlineMs };
    this.#keys = options.keys ??
      new KeySchema({ group: options.serviceName, serviceName: options.serviceName });
  }

  /**
   * Publishes one event. Throws `CircuitOpenError` / `NotConnectedError` when
   * Redis is away and nothing was sent, `OutcomeUnknownError` when it was sent
   * and no answer came.
   */
  publish(request: PublishRequest): Promise<PublishResult> {
    const partitions = this.#opts.partitions ?? 1;
    const req = partitions > 1
      ? {
        ...request,
        stream: partitionKey(request.stream, partitionOf(request.aggregateId, partitions)),
      }
      : request;
    const tracing = this.#opts.tracing;
    if (!tracing?.enabled) return this.#publish(req);
    return tracing.withSpan(`publish ${req.stream}`, {
      kind: "producer",
      attributes: {
        "messaging.system": "redis",
        "messaging.operation.type": "send",
        "messaging.destination.name": req.stream,
        "event.type": req.event,
        "event.aggregate_id": req.aggregateId,
      },
    }, (span) => this.#publish(req, tracing, span));
  }

  async #publish(req: PublishRequest, tracing?: Tracing, span?: Span): Promise<PublishResult> {
    const headers: Record<string, string> = { ...req.headers, correlationId: req.correlationId };
    if (req.idempotencyKey) headers.idempotencyKey = req.idempotencyKey;
    tracing?.inject(headers);
    const fields = toFields({
      event: req.event,
      aggregateId: req.aggregateId,
      payload: req.payload,
      headers,
      serviceName: this.#opts.serviceName,
      timestamp: isoInZone(new Date(), this.#opts.timezone ?? "UTC"),
      mimeType: "application/json",
    });
    const flat = Object.entries(fields).flat();
    const base = {
      stream: req.stream,
      event: req.event,
      aggregateId: req.aggregateId,
      correlationId: req.correlationId,
    };
    if (!req.idempotencyKey) {
      const id = await this.#opts.connection.exec(
        (c) => c.sendCommand(["XADD", req.stream, "*", ...flat]),
        this.#deadline,
      ) as string;
      this.#opts.metrics?.published.inc({ stream: req.stream });
      span?.setAttribute("messaging.message.id", id);
      return { id, ...base, published: true };
    }
    const key = this.#keys.publishIdempotency(req.stream, req.idempotencyKey);
    const [fresh, record] = await this.#opts.connection.exec(
      (c) =>
        PUBLISH_ONCE.run(c, [key, req.stream], [
          String(this.#opts.dedupTtlS ?? 86_400),
          JSON.stringify(base),
          ...flat,
        ]),
      this.#deadline,
    ) as [number, string];
    const first = JSON.parse(record) as Omit<PublishResult, "published">;
    if (Number(fresh) === 1) this.#opts.metrics?.published.inc({ stream: req.stream });
    span?.setAttributes({
      "messaging.message.id": first.id,
      "event.duplicate": Number(fresh) !== 1,
    });
    return { ...first, published: Number(fresh) === 1 };
  }
}
