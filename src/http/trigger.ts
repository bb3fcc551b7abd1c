/**
 * POST /trigger-test-event: validates the body with zod and publishes one
 * event through the `Publisher` (spec section 4). Empty body: a default
 * `manual_test` event. `Idempotency-Key` publishes once per key.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { PublishRequest, PublishResult } from "../stream/publisher.ts";
import { apiKeyAuth, rateLimit } from "./middleware.ts";
import type { RateLimiter } from "./rate_limit.ts";
import { type AppEnv, BodyTooLargeError, jsonError, readBodyLimited } from "./types.ts";

/** Largest accepted body in bytes. */
export const MAX_TRIGGER_BODY_BYTES = 10_240;

const triggerSchema = z.object({
  event: z.string().regex(/^[A-Za-z0-9_.:-]{1,100}$/, {
    message: "must be 1 to 100 characters of A-Z a-z 0-9 _ . : -",
  }).optional(),
  aggregateId: z.string().min(1, { message: "must not be empty" }).max(200, {
    message: "must be at most 200 characters",
  }).optional(),
  data: z.record(z.string(), z.unknown(), { error: "must be a JSON object" }).optional(),
  stream: z.string().optional(),
});

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
      let text: string;
      try {
        text = await readBodyLimited(c.req.raw, MAX_TRIGGER_BODY_BYTES);
      } catch (err) {
        if (!(err instanceof BodyTooLargeError)) throw err;
        return jsonError(c, 413, "payload_too_large", err.message);
      }
      let body: unknown = {};
      if (text.trim().length > 0) {
        const type = c.req.header("content-type") ?? "";
        if (!/^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i.test(type)) {
          return jsonError(c, 415, "unsupported_media_type", "Body must be application/json");
        }
        try {
          body = JSON.parse(text);
        } catch {
          return jsonError(c, 400, "invalid_json", "Body is not valid JSON");
        }
      }
      const parsed = triggerSchema.safeParse(body);
      if (!parsed.success) {
        return jsonError(
          c,
          400,
          "validation_failed",
          "Body does not match the schema",
          parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
        );
      }
      const stream = parsed.data.stream ?? options.streams[0];
      if (!options.streams.includes(stream)) {
        return jsonError(c, 400, "validation_failed", "Body does not match the schema", [{
          path: "stream",
          message: `must be one of the consumed streams: ${options.streams.join(", ")}`,
        }]);
      }
      const key = c.req.header("idempotency-key");
      if (key !== undefined && !IDEMPOTENCY_KEY_RE.test(key)) {
        return jsonError(c, 400, "validation_failed", "Invalid Idempotency-Key header", [{
          path: "Idempotency-Key",
          message: "must be 1 to 200 printable ASCII characters",
        }]);
      }
      c.set("trigger", { ...parsed.data, stream, idempotencyKey: key });
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

/** The validated trigger request, passed from validation to publishing. */
export interface TriggerRequest {
  event?: string;
  aggregateId?: string;
  data?: Record<string, unknown>;
  stream: string;
  idempotencyKey?: string;
}
