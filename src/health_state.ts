/**
 * Health state: the snapshot of everything the probes look at, and the
 * availability rules read from it, pure: `readiness` (ready, or the reason it
 * is not), `evaluateHealth` (healthy / degraded / unhealthy and the /health
 * body, see README "HTTP API"), and `HealthState`, which takes the snapshot
 * from the connection manager and the consumer and holds the shutting-down
 * flag. The HTTP layer only reads snapshots; it never decides availability.
 */
import type { CircuitState } from "./redis/breaker.ts";
import type { ConsumerStatus } from "./stream/status.ts";

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

/** Readiness: ready, or not with a reason. */
export function readiness(s: HealthSnapshot): { ready: true } | { ready: false; reason: string } {
  if (s.shuttingDown) return { ready: false, reason: "shutting_down" };
  if (!s.redis.connected) return { ready: false, reason: "redis_unavailable" };
  if (s.redis.circuit === "open") return { ready: false, reason: "circuit_open" };
  if (!s.consumer.active) return { ready: false, reason: "consumer_inactive" };
  return { ready: true };
}

/** How long a dead letter or a failed settle keeps /health degraded. */
const RECENT_WINDOW_MS = 5 * 60_000;

/** The detailed report of GET /health and its HTTP status. */
export function evaluateHealth(
  s: HealthSnapshot,
): { status: number; body: Record<string, unknown> } {
  const streams = s.consumer.streams;
  const pending = streams.reduce((n, x) => n + x.pending, 0);
  const lags = streams.map((x) => x.lag);
  const lag = lags.every((l) => l === null) ? null : lags.reduce<number>((n, l) => n + (l ?? 0), 0);
  const recent = (at: number | undefined) =>
    at !== undefined && s.now.getTime() - at < RECENT_WINDOW_MS;
  const dlqGrew = streams.some((x) => recent(x.dlqGrewAt));
  const settleFailed = streams.some((x) => recent(x.settleFailedAt));

  const redisStatus = !s.redis.connected || s.redis.circuit === "open"
    ? "unhealthy"
    : s.redis.circuit === "half_open"
    ? "degraded"
    : "healthy";
  const streamDegraded = pending > s.thresholds.pending ||
    (lag !== null && lag > s.thresholds.lag) || dlqGrew || settleFailed;
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
  if (settleFailed) {
    reasons.push("an entry could not be settled in the last 5 minutes (left pending)");
  }

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

/** Why publishing cannot be tried now, if so (Redis away, breaker open). */
export type AvailabilityResult = { ok: true } | { ok: false; retryAfterSeconds: number };

/** What `HealthState` reads of the Redis connection (the connection manager). */
export interface RedisHealthSource {
  readonly connected: boolean;
  readonly latencyMs?: number;
  readonly lastCheck?: Date;
  readonly lastError?: string;
  readonly breaker: { readonly state: CircuitState; retryAfterMs(): number };
}

/** Options of `HealthState`. */
export interface HealthStateOptions {
  service: { name: string; version: string; environment: string };
  /** Consumer group and this consumer's name, shown in /health. */
  group: string;
  consumerName: string;
  /** HEALTH_LAG_THRESHOLD and HEALTH_PENDING_THRESHOLD. */
  thresholds: { lag: number; pending: number };
  redis: RedisHealthSource;
  consumer: { status(): ConsumerStatus };
  /** Time source. Default: `new Date()`. */
  now?: () => Date;
}

/** How long a client should wait while Redis is not connected (seconds). */
const DISCONNECTED_RETRY_AFTER_S = 5;

/**
 * The service's health state: snapshots for the probes, availability for
 * publishing, and the shutting-down flag (set once, by the shutdown sequence).
 */
export class HealthState {
  readonly #opts: HealthStateOptions;
  readonly #now: () => Date;
  readonly #startedAt: Date;
  #shuttingDown = false;

  constructor(options: HealthStateOptions) {
    this.#opts = options;
    this.#now = options.now ?? (() => new Date());
    this.#startedAt = this.#now();
  }

  /** True once the shutdown sequence started. */
  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Marks the service as shutting down: readiness answers 503 from now on. */
  markShuttingDown(): void {
    this.#shuttingDown = true;
  }

  /** The current snapshot. */
  snapshot(): HealthSnapshot {
    const { redis, service } = this.#opts;
    return {
      now: this.#now(),
      startedAt: this.#startedAt,
      shuttingDown: this.#shuttingDown,
      service: { name: service.name, version: service.version, environment: service.environment },
      redis: {
        connected: redis.connected,
        latencyMs: redis.latencyMs,
        lastCheck: redis.lastCheck,
        circuit: redis.breaker.state,
        lastError: redis.lastError,
      },
      consumer: this.#opts.consumer.status(),
      group: this.#opts.group,
      consumerName: this.#opts.consumerName,
      thresholds: this.#opts.thresholds,
    };
  }

  /** Whether a publish can be tried now; if not, when to retry. */
  availability(): AvailabilityResult {
    const redis = this.#opts.redis;
    if (!redis.connected) return { ok: false, retryAfterSeconds: DISCONNECTED_RETRY_AFTER_S };
    const wait = redis.breaker.retryAfterMs();
    return wait > 0 ? { ok: false, retryAfterSeconds: Math.ceil(wait / 1000) } : { ok: true };
  }
}
