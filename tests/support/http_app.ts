/**
 * Test support for the HTTP app: `harness()` builds `createApp` with fakes (publisher, admin,
 * health source, availability), a real `Metrics` registry and a rate limiter on a fake clock,
 * and calls it through `app.request()` without a socket or Redis.
 *
 * @module
 */
import type { AdminPort } from "../../src/http/admin.ts";
import { createApp } from "../../src/http/app.ts";
import type { HealthSnapshot } from "../../src/health_state.ts";
import { RateLimiter } from "../../src/http/rate_limit.ts";
import { Metrics } from "../../src/metrics.ts";
import type { StreamReport } from "../../src/stream/admin.ts";
import type { PublishRequest, PublishResult } from "../../src/stream/publisher.ts";
import { assertEquals } from "./assert.ts";

/** Streams the fake app consumes; the first is the default target. */
export const STREAMS = ["event-stream", "second"];
/** The fake health source's clock. */
export const NOW = new Date("2025-01-28T10:00:00.000Z");

/** A parsed JSON object. */
export type Json = Record<string, unknown>;

/** A snapshot of a healthy service. */
export function healthy(): HealthSnapshot {
  return {
    now: NOW,
    startedAt: new Date(NOW.getTime() - 60_000),
    shuttingDown: false,
    service: { name: "svc", version: "1.0.0", environment: "test" },
    redis: { connected: true, latencyMs: 1, lastCheck: NOW, circuit: "closed" },
    consumer: {
      active: true,
      inFlight: 0,
      streams: [{
        stream: "event-stream",
        group: "svc",
        pending: 0,
        lag: 0,
        length: 0,
        consumers: 1,
        lastDeliveredId: null,
        dlqStream: "event-stream:dlq",
        dlqLength: 0,
      }],
    },
    group: "svc",
    consumerName: "pod-1",
    thresholds: { lag: 100, pending: 100 },
  };
}

/** Options of {@linkcode harness}. */
export interface HarnessOptions {
  apiKey?: string;
  trustProxy?: boolean;
  metricsEnabled?: boolean;
  rate?: number;
  /** Bucket size of the injected limiter (default 1, so a second request is limited). */
  burst?: number;
  /** false: no injected limiter; the app builds its own from `http` (real clock). */
  injectLimiter?: boolean;
  rateLimitBurst?: number;
  admin?: Partial<AdminPort>;
  requestTimeoutMs?: number;
  publish?: (req: PublishRequest) => Promise<PublishResult>;
}

/** The app with fakes, plus what the fakes saw. */
export function harness(o: HarnessOptions = {}) {
  let now = 1_000_000;
  const clock = { now: () => now, advance: (ms: number) => void (now += ms) };
  const published: PublishRequest[] = [];
  const replays: [string, number][] = [];
  const seenKeys = new Map<string, string>();
  const state = {
    health: healthy(),
    available: { ok: true } as { ok: true } | { ok: false; retryAfterSeconds: number },
  };
  let nextId = 1;
  const defaultPublish = (req: PublishRequest): Promise<PublishResult> => {
    const earlier = req.idempotencyKey ? seenKeys.get(req.idempotencyKey) : undefined;
    const id = earlier ?? `1700000000000-${nextId++}`;
    if (req.idempotencyKey && !earlier) seenKeys.set(req.idempotencyKey, id);
    return Promise.resolve({
      id,
      stream: req.stream,
      event: req.event,
      aggregateId: req.aggregateId,
      correlationId: req.correlationId,
      published: earlier === undefined,
    });
  };
  const metrics = new Metrics({ processMetrics: false });
  const app = createApp({
    health: () => state.health,
    publisher: {
      publish: (req) => {
        published.push(req);
        return (o.publish ?? defaultPublish)(req);
      },
    },
    admin: {
      report: o.admin?.report ?? ((stream: string): Promise<StreamReport> =>
        Promise.resolve({
          stream,
          length: 3,
          groups: [],
          deadLetter: { stream: `${stream}:dlq`, length: 1 },
        })),
      replay: (stream: string, count: number) => {
        replays.push([stream, count]);
        return o.admin?.replay?.(stream, count) ?? Promise.resolve(["1-1", "1-2"]);
      },
      partitions: o.admin?.partitions,
      partitionCount: o.admin?.partitionCount,
      keysOf: o.admin?.keysOf,
    },
    availability: () => state.available,
    metrics,
    streams: STREAMS,
    version: "9.9.9",
    http: {
      apiKey: o.apiKey,
      rateLimitPerSecond: o.rate ?? 1,
      rateLimitBurst: o.rateLimitBurst,
      trustProxy: o.trustProxy ?? false,
      metricsEnabled: o.metricsEnabled ?? true,
      requestTimeoutMs: o.requestTimeoutMs ?? 10_000,
    },
    limiter: o.injectLimiter === false
      ? undefined
      : new RateLimiter({ ratePerSecond: o.rate ?? 1, burst: o.burst ?? 1, clock: clock.now }),
  });

  /** One request from `client` (remote address). */
  const request = (path: string, init: RequestInit = {}, client = "1.2.3.4") =>
    app.request(path, init, { remoteAddr: { transport: "tcp", hostname: client, port: 1 } });

  /** POST /trigger-test-event; the clock moves a second first so earlier calls do not limit it. */
  const trigger = (
    body?: BodyInit,
    headers: Record<string, string> = {},
    client?: string,
    path = "/trigger-test-event",
  ) => {
    clock.advance(1000);
    const h = body === undefined ? headers : { "Content-Type": "application/json", ...headers };
    return request(path, { method: "POST", body, headers: h }, client);
  };
  return { app, clock, metrics, published, replays, state, request, trigger };
}

/** The body of `res` as a JSON object. */
export async function json(res: Response): Promise<Json> {
  return await res.json() as Json;
}

/** A request body stream (no Content-Length) of `size` bytes of JSON-ish text. */
export function streamBody(size: number): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(`{"data":{"p":"${"x".repeat(size - 17)}"}}`);
  let sent = false;
  return new ReadableStream({
    pull(controller) {
      if (sent) return controller.close();
      sent = true;
      // Two chunks, so the limit is enforced while streaming.
      controller.enqueue(bytes.subarray(0, 4000));
      controller.enqueue(bytes.subarray(4000));
    },
  });
}

/** A JSON trigger body of exactly `size` bytes. */
export function bodyOfSize(size: number): string {
  const s = `{"data":{"p":"${"x".repeat(size - 17)}"}}`;
  assertEquals(new TextEncoder().encode(s).length, size);
  return s;
}
