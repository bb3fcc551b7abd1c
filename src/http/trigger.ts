/**
 * POST /trigger-test-event: validates the body (see `json_body.ts` and
 * `schemas.ts`) and publishes one event through the `Publisher`. Empty body:
 * a default `manual_test` event. `Idempotency-Key` publishes once per key.
 */
import { Hono } from "npm:hono@^4.13.19";
import type { PublishRequest, PublishResult } from "../stream/publisher.ts";
import { readJsonBody, validationFailed } from "./json_body.ts";
import { apiKeyAuth, rateLimit } from "./middleware.ts";
import type { RateLimiter } from "./rate_limit.ts";
import { triggerRequestSchema } from "./schemas.ts";
import { type AppEnv, jsonError } from "./types.ts";

const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e]{1,200}$/;

/** Why publishing cannot be tried now, if so (Redis away, breaker open). */
export type Availability = () => { ok: true } | { ok: false; retryAfterSeconds: number };

/** Dependencies of the trigger route. */
export interface TriggerOptions {
  publisher: { publish(req: PublishRequest): Promise<PublishResult> };
  /** Consumed streams; the first is the default target. */
  streams: readonly string[];
  availability: Availability;
  limiter: RateLimiter;
  trustProxy: boolean;
  apiKey?: string;
}

/** The trigger route group. */
export function triggerRoutes(options: TriggerOptions): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post(
    "/trigger-test-event",
    apiKeyAuth(options.apiKey),
    async (c, next) => {
      // Validate before spending a rate-limit token: a bad request publishes nothing.
      const body = await readJsonBody(c, triggerRequestSchema);
      if (!body.ok) return body.response;
      const stream = body.value.stream ?? options.streams[0];
      if (!options.streams.includes(stream)) {
        return validationFailed(c, [{
          path: "stream",
          message: `must be one of the consumed streams: ${options.streams.join(", ")}`,
        }]);
      }
      const key = c.req.header("idempotency-key");
      if (key !== undefined && !IDEMPOTENCY_KEY_RE.test(key)) {
        return validationFailed(c, [{
          path: "Idempotency-Key",
          message: "must be 1 to 200 printable ASCII characters",
        }], "Invalid Idempotency-Key header");
      }
      c.set("trigger", { ...body.value, stream, idempotencyKey: key });
      await next();
    },
    rateLimit({ limiter: options.limiter, trustProxy: options.trustProxy }),
    async (c) => {
      const available = options.availability();
      if (!available.ok) {
        c.header("Retry-After", String(available.retryAfterSeconds));
        return jsonError(c, 503, "redis_unavailable", "Redis is unavailable; retry later");
      }
      const t = c.get("trigger");
      const correlationId = c.get("correlationId");
      const result = await options.publisher.publish({
        stream: t.stream,
        event: t.event ?? "manual_test",
        aggregateId: t.aggregateId ?? crypto.randomUUID(),
        payload: t.data ?? { message: "Manual test event", triggeredAt: new Date().toISOString() },
        correlationId,
        idempotencyKey: t.idempotencyKey,
      });
      return c.json({
        success: true,
        id: result.id,
        stream: result.stream,
        event: result.event,
        aggregateId: result.aggregateId,
        correlationId: result.correlationId,
        ...(t.idempotencyKey ? { duplicate: !result.published } : {}),
      }, 200);
    },
  );
  return app;
}
