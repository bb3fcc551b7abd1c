/**
 * The HTTP app, built by a factory from its dependencies so tests can call
 * `app.request()` without a socket. Route groups: health, trigger, admin,
 * metrics, OpenAPI; one `onError` maps domain errors to statuses. Every error
 * answer is `{"success":false,"error","message"}`: unknown paths 404
 * `not_found`, a known path with another method 405 with `Allow` (counted
 * under its route in the metrics). A trailing slash on a known path answers
 * as the path without it, with no redirect. HTTP code never talks to Redis.
 */
import { Hono } from "npm:hono@^4.13.19";
import { HTTPException } from "npm:hono@^4.13.19/http-exception";
import { secureHeaders } from "npm:hono@^4.13.19/secure-headers";
import { timeout } from "npm:hono@^4.13.19/timeout";
import { errorInfo, getLogger, type Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { CircuitOpenError } from "../redis/breaker.ts";
import { NotConnectedError, OutcomeUnknownError } from "../redis/connection.ts";
import type { PublishRequest, PublishResult } from "../stream/publisher.ts";
import type { Tracing } from "../tracing.ts";
import { type AdminPort, adminRoutes } from "./admin.ts";
import { healthRoutes, type HealthSource } from "./health.ts";
import { correlationId, requestMetrics } from "./middleware.ts";
import { openApiDocument } from "./openapi.ts";
import { DEFAULT_RATE_LIMIT_BURST, RateLimiter } from "./rate_limit.ts";
import { type Availability, triggerRoutes } from "./trigger.ts";
import { requestSpan } from "./tracing.ts";
import { type AppEnv, jsonError } from "./types.ts";

/** Dependencies of the app. */
export interface AppDeps {
  health: HealthSource;
  publisher: { publish(req: PublishRequest): Promise<PublishResult> };
  admin: AdminPort;
  availability: Availability;
  metrics: Metrics;
  streams: readonly string[];
  version: string;
  http: {
    apiKey?: string;
    rateLimitPerSecond: number;
    /** RATE_LIMIT_BURST. Default `DEFAULT_RATE_LIMIT_BURST` (10). */
    rateLimitBurst?: number;
    trustProxy: boolean;
    metricsEnabled: boolean;
    requestTimeoutMs: number;
  };
  logger?: Logger;
  /** Rate limiter (tests inject one with a fake clock). */
  limiter?: RateLimiter;
  /** Tracing (TRACE_ENABLED); names the request spans after their routes. Default: off. */
  tracing?: Tracing;
}

/** Route patterns used as metric labels. */
export const ROUTES = new Set([
  "/health/live",
  "/health/ready",
  "/health",
  "/health-check",
  "/metrics",
  "/openapi.json",
  "/trigger-test-event",
  "/admin/streams",
  "/admin/partitions",
  "/admin/dlq/replay",
]);

/** Methods each route answers (HEAD goes with GET); other methods get 405. */
export const ALLOWED_METHODS: Readonly<Record<string, string>> = {
  "/trigger-test-event": "POST",
  "/admin/dlq/replay": "POST",
};

/** The `Allow` header of `route`. */
export function allowedMethods(route: string): string {
  return ALLOWED_METHODS[route] ?? "GET, HEAD";
}

/** Builds the Hono app. */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const log = deps.logger ?? getLogger("http");
  // strict: false: `/health/live/` is `/health/live` (no redirect).
  const app = new Hono<AppEnv>({ strict: false });

  app.use("*", correlationId());
  app.use("*", secureHeaders());
  if (deps.tracing?.enabled) app.use("*", requestSpan({ tracing: deps.tracing, routes: ROUTES }));
  if (deps.http.metricsEnabled) {
    app.use("*", requestMetrics({ metrics: deps.metrics, routes: ROUTES }));
  }
  app.use(
    "*",
    timeout(
      deps.http.requestTimeoutMs,
      () => new HTTPException(503, { message: "Request timed out" }),
    ),
  );

  app.route("/", healthRoutes(deps.health));
  app.route(
    "/",
    triggerRoutes({
      publisher: deps.publisher,
      streams: deps.streams,
      availability: deps.availability,
      limiter: deps.limiter ?? new RateLimiter({
        ratePerSecond: deps.http.rateLimitPerSecond,
        burst: deps.http.rateLimitBurst ?? DEFAULT_RATE_LIMIT_BURST,
      }),
      trustProxy: deps.http.trustProxy,
      apiKey: deps.http.apiKey,
    }),
  );
  app.route(
    "/",
    adminRoutes({ admin: deps.admin, streams: deps.streams, apiKey: deps.http.apiKey }),
  );

  if (deps.http.metricsEnabled) {
    app.get("/metrics", async (c) => {
      const { body, contentType } = await deps.metrics.render();
      return c.body(body, 200, { "Content-Type": contentType });
    });
  }
  // Made on first request, not at start (it converts every schema to JSON Schema: ~4 ms).
  let openapi: ReturnType<typeof openApiDocument> | undefined;
  app.get("/openapi.json", (c) => c.json(openapi ??= openApiDocument(deps.version)));

  // Registered after the real handlers: only a method no handler took gets here. A route of
  // its own, so the metrics count the 405 under its route pattern.
  for (const route of ROUTES) {
    if (route === "/metrics" && !deps.http.metricsEnabled) continue;
    app.all(route, (c) => {
      const allow = allowedMethods(route);
      c.header("Allow", allow);
      return jsonError(c, 405, "method_not_allowed", `Use ${allow} for ${route}`);
    });
  }

  app.notFound((c) => jsonError(c, 404, "not_found", "No such route"));

  app.onError((err, c) => {
    if (err instanceof CircuitOpenError) {
      c.header("Retry-After", String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
      return jsonError(c, 503, "circuit_open", "Redis circuit breaker is open; retry later");
    }
    if (err instanceof OutcomeUnknownError) {
      // Sent, and no answer: it may have taken effect, so no Retry-After.
      return jsonError(
        c,
        504,
        "outcome_unknown",
        "Redis did not answer in time after the request was sent: the event may have been " +
          "published; retry with an Idempotency-Key to publish it once",
      );
    }
    if (err instanceof NotConnectedError) {
      c.header("Retry-After", "5");
      return jsonError(c, 503, "redis_unavailable", "Redis is unavailable; retry later");
    }
    if (err instanceof HTTPException) {
      if (err.status === 503) c.header("Retry-After", "5");
      return jsonError(c, err.status, err.status === 503 ? "timeout" : "http_error", err.message);
    }
    log.error("Unhandled error on {method} {path}: {error}", {
      method: c.req.method,
      path: c.req.path,
      error: errorInfo(err).message,
    });
    return jsonError(c, 500, "internal_error", "Internal server error");
  });

  return app;
}
