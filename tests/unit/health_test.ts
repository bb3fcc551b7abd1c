/**
 * Unit tests of src/health_state.ts: `readiness` reasons in priority order and
 * `evaluateHealth` (healthy / degraded / unhealthy rules of README: HTTP API,
 * 200/503 mapping, the DLQ 5-minute window and the documented body shape).
 */
import {
  evaluateHealth,
  type HealthSnapshot,
  HealthState,
  readiness,
} from "../../src/health_state.ts";
import type { StreamStats } from "../../src/stream/status.ts";
import { assertEquals } from "../support/assert.ts";

const NOW = new Date("2025-01-28T10:00:00.000Z");

function stats(overrides: Partial<StreamStats> = {}): StreamStats {
  return {
    stream: "event-stream",
    group: "svc",
    pending: 0,
    lag: 0,
    length: 10,
    consumers: 1,
    lastDeliveredId: "1-0",
    dlqStream: "event-stream:dlq",
    dlqLength: 0,
    ...overrides,
  };
}

type SnapshotOverrides = {
  shuttingDown?: boolean;
  redis?: Partial<HealthSnapshot["redis"]>;
  consumer?: Partial<HealthSnapshot["consumer"]>;
  thresholds?: HealthSnapshot["thresholds"];
};

function snapshot(o: SnapshotOverrides = {}): HealthSnapshot {
  return {
    now: NOW,
    startedAt: new Date(NOW.getTime() - 3_600_500),
    shuttingDown: o.shuttingDown ?? false,
    service: { name: "svc", version: "1.2.3", environment: "test" },
    redis: {
      connected: true,
      latencyMs: 2,
      lastCheck: new Date(NOW.getTime() - 1000),
      circuit: "closed",
      ...o.redis,
    },
    consumer: {
      active: true,
      lastMessage: new Date(NOW.getTime() - 5000),
      inFlight: 0,
      streams: [stats()],
      ...o.consumer,
    },
    group: "svc",
    consumerName: "pod-1",
    thresholds: o.thresholds ?? { lag: 100, pending: 50 },
  };
}

function status(o: SnapshotOverrides): [string, number] {
  const { status, body } = evaluateHealth(snapshot(o));
  return [body.status as string, status];
}

Deno.test("readiness() is ready when Redis answers and the consumer runs", () => {
  assertEquals(readiness(snapshot()), { ready: true });
  // Degraded is still ready.
  assertEquals(readiness(snapshot({ redis: { circuit: "half_open" } })), { ready: true });
});

Deno.test("readiness() gives the reason it is not ready, shutting down first", () => {
  assertEquals(readiness(snapshot({ shuttingDown: true })), {
    ready: false,
    reason: "shutting_down",
  });
  assertEquals(readiness(snapshot({ shuttingDown: true, redis: { connected: false } })), {
    ready: false,
    reason: "shutting_down",
  });
  assertEquals(readiness(snapshot({ redis: { connected: false } })), {
    ready: false,
    reason: "redis_unavailable",
  });
  assertEquals(readiness(snapshot({ redis: { circuit: "open" } })), {
    ready: false,
    reason: "circuit_open",
  });
  assertEquals(readiness(snapshot({ consumer: { active: false } })), {
    ready: false,
    reason: "consumer_inactive",
  });
});

Deno.test("evaluateHealth() is healthy (200) when everything is fine", () => {
  assertEquals(status({}), ["healthy", 200]);
});

Deno.test("evaluateHealth() is degraded (200) when the breaker is half-open", () => {
  assertEquals(status({ redis: { circuit: "half_open" } }), ["degraded", 200]);
});

Deno.test("evaluateHealth() is degraded (200) when lag or pending is over its threshold", () => {
  const t = { lag: 100, pending: 50 };
  assertEquals(status({ thresholds: t, consumer: { streams: [stats({ lag: 101 })] } }), [
    "degraded",
    200,
  ]);
  assertEquals(status({ thresholds: t, consumer: { streams: [stats({ lag: 100 })] } }), [
    "healthy",
    200,
  ]);
  assertEquals(status({ thresholds: t, consumer: { streams: [stats({ pending: 51 })] } }), [
    "degraded",
    200,
  ]);
  // Summed over streams.
  const two = [stats({ pending: 30 }), stats({ stream: "b", pending: 30 })];
  assertEquals(status({ thresholds: t, consumer: { streams: two } }), ["degraded", 200]);
  // Unknown lag (null) does not degrade.
  assertEquals(status({ thresholds: t, consumer: { streams: [stats({ lag: null })] } }), [
    "healthy",
    200,
  ]);
});

Deno.test("evaluateHealth() is degraded when the DLQ grew within 5 minutes, not 6 minutes ago", () => {
  const recent = stats({ dlqGrewAt: NOW.getTime() - 4 * 60_000, dlqLength: 3 });
  assertEquals(status({ consumer: { streams: [recent] } }), ["degraded", 200]);
  const old = stats({ dlqGrewAt: NOW.getTime() - 6 * 60_000, dlqLength: 3 });
  assertEquals(status({ consumer: { streams: [old] } }), ["healthy", 200]);
});

Deno.test("evaluateHealth() is degraded when a settle failed within 5 minutes, not 6 minutes ago", () => {
  const recent = stats({ settleFailedAt: NOW.getTime() - 4 * 60_000 });
  assertEquals(status({ consumer: { streams: [recent] } }), ["degraded", 200]);
  const old = stats({ settleFailedAt: NOW.getTime() - 6 * 60_000 });
  assertEquals(status({ consumer: { streams: [old] } }), ["healthy", 200]);
});

Deno.test("evaluateHealth() is unhealthy (503) when Redis is down, the breaker open or no consumer", () => {
  assertEquals(status({ redis: { connected: false } }), ["unhealthy", 503]);
  assertEquals(status({ redis: { circuit: "open" } }), ["unhealthy", 503]);
  assertEquals(status({ consumer: { active: false } }), ["unhealthy", 503]);
  // Unhealthy wins over degraded.
  assertEquals(
    status({ redis: { circuit: "open" }, consumer: { streams: [stats({ lag: 10_000 })] } }),
    ["unhealthy", 503],
  );
});

Deno.test("evaluateHealth() body has the documented shape (README: HTTP API)", () => {
  const { body } = evaluateHealth(snapshot());
  assertEquals(body.status, "healthy");
  assertEquals(body.timestamp, "2025-01-28T10:00:00.000Z");
  assertEquals(body.service, { name: "svc", version: "1.2.3", uptime: 3600, environment: "test" });
  const checks = body.checks as Record<string, Record<string, unknown>>;
  assertEquals(checks.redis, {
    status: "healthy",
    latency: 2,
    lastCheck: "2025-01-28T09:59:59.000Z",
    circuit: "closed",
  });
  const es = checks.eventStream;
  assertEquals(
    {
      status: es.status,
      consumerActive: es.consumerActive,
      lastMessage: es.lastMessage,
      stream: es.stream,
      group: es.group,
      consumer: es.consumer,
      pending: es.pending,
      lag: es.lag,
    },
    {
      status: "healthy",
      consumerActive: true,
      lastMessage: "2025-01-28T09:59:55.000Z",
      stream: "event-stream",
      group: "svc",
      consumer: "pod-1",
      pending: 0,
      lag: 0,
    },
  );
  assertEquals("reasons" in body, false);
});

Deno.test("evaluateHealth() body reports problems per check", () => {
  const { body } = evaluateHealth(
    snapshot({
      redis: { connected: false, lastError: "ECONNREFUSED", latencyMs: undefined },
      consumer: { active: false, lastMessage: undefined, streams: [stats({ lag: null })] },
    }),
  );
  const checks = body.checks as Record<string, Record<string, unknown>>;
  assertEquals(checks.redis.status, "unhealthy");
  assertEquals(checks.redis.latency, null);
  assertEquals(checks.redis.error, "ECONNREFUSED");
  assertEquals(checks.eventStream.status, "unhealthy");
  assertEquals(checks.eventStream.consumerActive, false);
  assertEquals(checks.eventStream.lastMessage, null);
  assertEquals(checks.eventStream.lag, null);
  assertEquals(body.reasons, ["redis unreachable", "no consumer running"]);

  const halfOpen = evaluateHealth(snapshot({ redis: { circuit: "half_open" } })).body;
  assertEquals(
    (halfOpen.checks as Record<string, Record<string, unknown>>).redis.circuit,
    "half-open",
  );
});

Deno.test("HealthState.availability() waits 5 s while disconnected and the breaker's time while open", () => {
  const redis = {
    connected: true,
    breaker: { state: "closed" as const, retryAfterMs: () => 0 },
  };
  const health = new HealthState({
    service: { name: "svc", version: "1", environment: "test" },
    group: "g",
    consumerName: "c",
    thresholds: { lag: 1, pending: 1 },
    redis,
    consumer: { status: () => ({ active: true, inFlight: 0, streams: [] }) },
    now: () => NOW,
  });
  assertEquals(health.availability(), { ok: true });
  redis.breaker.retryAfterMs = () => 2500;
  assertEquals(health.availability(), { ok: false, retryAfterSeconds: 3 });
  redis.connected = false;
  assertEquals(health.availability(), { ok: false, retryAfterSeconds: 5 });
  assertEquals(readiness(health.snapshot()), { ready: false, reason: "redis_unavailable" });
  health.markShuttingDown();
  assertEquals(readiness(health.snapshot()), { ready: false, reason: "shutting_down" });
});
