/**
 * HTTP middleware factories: correlation id, request metrics, API key, rate
 * limit. Each takes an options object and returns a named handler.
 */
import type { Context, MiddlewareHandler } from "npm:hono@^4.13.19";
import { withContext } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { RateLimiter } from "./rate_limit.ts";
import { type AppEnv, jsonError } from "./types.ts";

const CORRELATION_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** Accepts the request's `X-Correlation-ID` when well-formed, else makes one; echoes it. */
export function correlationId(): MiddlewareHandler<AppEnv> {
  return async function correlationIdMiddleware(c, next) {
    const given = c.req.header("x-correlation-id");
    const id = given && CORRELATION_RE.test(given) ? given : crypto.randomUUID();
    c.set("correlationId", id);
    c.header("X-Correlation-ID", id);
    await withContext({ correlationId: id }, () => next());
    // Error and not-found responses are built after this header was set on the
    // context; make sure the final response carries it too.
    c.res.headers.set("X-Correlation-ID", id);
  };
}

/** Options of `requestMetrics`. */
export interface RequestMetricsOptions {
  metrics: Metrics;
  /** Route patterns to label with; anything else is labelled `other`. */
  routes: ReadonlySet<string>;
}

/** Counts and times requests by method, route pattern and status. */
export function requestMetrics(options: RequestMetricsOptions): MiddlewareHandler<AppEnv> {
  return async function requestMetricsMiddleware(c, next) {
    const started = performance.now();
    try {
      await next();
    } finally {
      const path = c.req.routePath;
      const route = options.routes.has(path) ? path : "other";
      const status = String(c.res.status);
      options.metrics.httpRequests.inc({ method: c.req.method, route, status });
      options.metrics.httpDuration.observe({ route }, (performance.now() - started) / 1000);
    }
  };
}

const encoder = new TextEncoder();

async function digest(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(s)));
}

/** Compares two secrets in time independent of where they differ. */
export async function timingSafeEqual(a: string, b: string): Promise<boolean> {
  const [da, db] = await Promise.all([digest(a), digest(b)]);
  let diff = 0;
  for (let i = 0; i < da.length; i++) diff |= da[i] ^ db[i];
  return diff === 0;
}

/**
 * Requires the API key when `apiKey` is set: either `Authorization: Bearer <key>` or
 * `X-API-Key: <key>` carrying it is enough (a wrong value in the other header does not matter).
 */
export function apiKeyAuth(apiKey: string | undefined): MiddlewareHandler<AppEnv> {
  return async function apiKeyMiddleware(c, next) {
    if (!apiKey) return await next();
    const auth = c.req.header("authorization");
    const bearer = auth && /^Bearer\s+/i.test(auth) ? auth.replace(/^Bearer\s+/i, "").trim() : "";
    const candidates = [bearer, c.req.header("x-api-key") ?? ""].filter((k) => k !== "");
    // Both compared (no early exit), each in time independent of where it differs.
    const matches = await Promise.all(candidates.map((k) => timingSafeEqual(k, apiKey)));
    if (!matches.includes(true)) {
      c.header("WWW-Authenticate", 'Bearer realm="redis-stream-service"');
      return jsonError(c, 401, "unauthorized", "Missing or invalid API key");
    }
    await next();
  };
}

/** The client address: the socket's, or the first `X-Forwarded-For` hop when trusted. */
export function clientAddress(c: Context<AppEnv>, trustProxy: boolean): string {
  if (trustProxy) {
    const xff = c.req.header("x-forwarded-for");
    const first = xff?.split(",")[0]?.trim();
    if (first) return first;
  }
  const addr = c.env?.remoteAddr;
  return addr && "hostname" in addr ? addr.hostname : "unknown";
}

/** Options of `rateLimit`. */
export interface RateLimitOptions {
  limiter: RateLimiter;
  trustProxy: boolean;
}

/** Answers 429 with `Retry-After` when the client is over its rate. */
export function rateLimit(options: RateLimitOptions): MiddlewareHandler<AppEnv> {
  return async function rateLimitMiddleware(c, next) {
    const decision = options.limiter.take(clientAddress(c, options.trustProxy));
    if (!decision.allowed) {
      c.header("Retry-After", String(decision.retryAfterSeconds));
      return jsonError(c, 429, "rate_limited", "Too many requests; retry later");
    }
    await next();
  };
}
