/**
 * Health: the readiness rule and the /health report, computed from a snapshot
 * of state (pure: `evaluateHealth`), and the probe routes, which only read
 * state and so answer in well under 100 ms whatever Redis does.
 */
import { Hono } from "hono";
import type { CircuitState } from "../redis/breaker.ts";
import type { ConsumerStatus } from "../stream/status.ts";
import type { AppEnv } from "./types.ts";

/** Everything the health rules look at. */
export interface HealthSnapshot {
  now: Date;
  startedAt: Date;
  shuttingDown: boolean;
  service: { name: string; version: string; environment: string };
  redis: {
    connected: boolean;
    latencyMs?: number;
    lastCheck?: Date;
    circuit: CircuitState;
    lastError?: string;
  };
  consumer: ConsumerStatus;
  group: string;
  consumerName: string;
  thresholds: { lag: number; pending: number };
}

/** Source of snapshots (main wires it to the connection manager and consumer). */
export type HealthSource = () => HealthSnapshot;

/** Readiness: ready, or not with a reason. */
export function readiness(s: HealthSnapshot): { ready: true } | { ready: false; reason: string } {
  if (s.shuttingDown) return { ready: false, reason: "shutting_down" };
  if (!s.redis.connected) return { ready: false, reason: "redis_unavailable" };
  if (s.redis.circuit === "open") return { ready: false, reason: "circuit_open" };
  if (!s.consumer.active) return { ready: false, reason: "consumer_inactive" };
  return { ready: true };
}

const DLQ_WINDOW_MS = 5 * 60_000;

/** The detailed report of GET /health and its HTTP status. */
export function evaluateHealth(
  s: HealthSnapshot,
): { status: number; body: Record<string, unknown> } {
  const streams = s.consumer.streams;
  const pending = streams.reduce((n, x) => n + x.pending, 0);
  const lags = streams.map((x) => x.lag);
  const lag = lags.every((l) => l === null) ? null : lags.reduce<number>((n, l) => n + (l ?? 0), 0);
  const dlqGrew = streams.some((x) =>
    x.dlqGrewAt !== undefined && s.now.getTime() - x.dlqGrewAt < DLQ_WINDOW_MS
  );

  const redisStatus = !s.redis.connected || s.redis.circuit === "open"
    ? "unhealthy"
    : s.redis.circuit === "half_open"
    ? "degraded"
    : "healthy";
  const streamDegraded = pending > s.thresholds.pending ||
    (lag !== null && lag > s.thresholds.lag) || dlqGrew;
  const streamStatus = !s.consumer.active ? "unhealthy" : streamDegraded ? "degraded" : "healthy";

  const status = redisStatus === "unhealthy" || streamStatus === "unhealthy"
    ? "unhealthy"
    : redisStatus === "degraded" || streamStatus === "degraded"
    ? "degraded"
    : "healthy";

  const reasons: string[] = [];
  if (s.shuttingDown) reasons.push("shutting down");
  if (!s.redis.connected) reasons.push("redis unreachable");
  if (s.redis.circuit !== "closed") reasons.push(`circuit ${s.redis.circuit.replace("_", "-")}`);
  if (!s.consumer.active) reasons.push("no consumer running");
  if (pending > s.thresholds.pending) {
    reasons.push(`pending ${pending} over ${s.thresholds.pending}`);
  }
  if (lag !== null && lag > s.thresholds.lag) reasons.push(`lag ${lag} over ${s.thresholds.lag}`);
  if (dlqGrew) reasons.push("dead-letter stream grew in the last 5 minutes");

  const body: Record<string, unknown> = {
    status,
    timestamp: s.now.toISOString(),
    service: {
      name: s.service.name,
      version: s.service.version,
      uptime: Math.floor((s.now.getTime() - s.startedAt.getTime()) / 1000),
      environment: s.service.environment,
    },
    checks: {
      redis: {
        status: redisStatus,
        latency: s.redis.latencyMs ?? null,
        lastCheck: s.redis.lastCheck?.toISOString() ?? null,
        circuit: s.redis.circuit.replace("_", "-"),
        ...(s.redis.connected ? {} : { error: s.redis.lastError ?? "not connected" }),
      },
      eventStream: {
        status: streamStatus,
        consumerActive: s.consumer.active,
        lastMessage: s.consumer.lastMessage?.toISOString() ?? null,
        stream: streams.map((x) => x.stream).join(","),
        group: s.group,
        consumer: s.consumerName,
        pending,
        lag,
        inFlight: s.consumer.inFlight,
        streams: streams.map((x) => ({
          stream: x.stream,
          pending: x.pending,
          lag: x.lag,
          length: x.length,
          deadLetterStream: x.dlqStream,
          deadLetterLength: x.dlqLength,
        })),
      },
    },
  };
  if (reasons.length) body.reasons = reasons;
  return { status: status === "unhealthy" ? 503 : 200, body };
}

/** The probe routes: /health/live, /health/ready, /health, /health-check. */
export function healthRoutes(source: HealthSource): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/health/live", (c) => c.text("OK", 200));
  app.get("/health/ready", (c) => {
    const s = source();
    const r = readiness(s);
    const timestamp = s.now.toISOString();
    if (r.ready) return c.json({ status: "ready", timestamp }, 200);
    return c.json({ status: "not_ready", reason: r.reason, timestamp }, 503);
  });
  app.get("/health", (c) => {
    const { status, body } = evaluateHealth(source());
    return c.json(body, status === 503 ? 503 : 200);
  });
  app.get("/health-check", (c) => {
    const r = readiness(source());
    return r.ready ? c.text("ok", 200) : c.text("not ok", 503);
  });
  return app;
}
