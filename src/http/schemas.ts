/**
 * The zod schemas of the HTTP bodies: request bodies (validated at run time by
 * the routes) and answer bodies (what the routes build). `openapi.ts` turns
 * them into the schemas of `/openapi.json`, so the document and the code share
 * one definition; the tests validate real answers against that document.
 */
import { z } from "npm:zod@^4.6.7";

/** Body of `POST /trigger-test-event` (all optional; empty body: a default `manual_test`). */
export const triggerRequestSchema = z.object({
  event: z.string().regex(/^[A-Za-z0-9_.:-]{1,100}$/, {
    message: "must be 1 to 100 characters of A-Z a-z 0-9 _ . : -",
  }).optional(),
  aggregateId: z.string().min(1, { message: "must not be empty" }).max(200, {
    message: "must be at most 200 characters",
  }).optional(),
  data: z.record(z.string(), z.unknown(), { error: "must be a JSON object" }).optional(),
  stream: z.string().optional().describe("One of the consumed streams (STREAM); default the first"),
});

/** Most dead-letter entries one replay moves. */
export const MAX_REPLAY_COUNT = 10_000;
/** Dead-letter entries one replay moves when `count` is not given. */
export const DEFAULT_REPLAY_COUNT = 100;

/** Body of `POST /admin/dlq/replay`. */
export const replayRequestSchema = z.object({
  stream: z.string().min(1).describe("A consumed stream; its dead-letter entries are moved"),
  count: z.number().int().min(1).max(MAX_REPLAY_COUNT).optional().describe(
    `Entries to move at most (default ${DEFAULT_REPLAY_COUNT})`,
  ),
});

/** Every 4xx and 5xx answer. */
export const errorSchema = z.looseObject({
  success: z.literal(false),
  error: z.string().describe(
    "Machine-readable code: not_found, method_not_allowed, invalid_json, validation_failed, " +
      "unauthorized, payload_too_large, unsupported_media_type, rate_limited, " +
      "redis_unavailable, circuit_open, timeout, outcome_unknown, internal_error",
  ),
  message: z.string(),
  details: z.array(z.object({ path: z.string(), message: z.string() })).optional()
    .describe("Per field, what is wrong (400 validation_failed)"),
});

/** 200 of `POST /trigger-test-event`. */
export const triggerResponseSchema = z.looseObject({
  success: z.literal(true),
  id: z.string().regex(/^\d+-\d+$/).describe("Stream entry id"),
  stream: z.string(),
  event: z.string(),
  aggregateId: z.string(),
  correlationId: z.string(),
  duplicate: z.boolean().optional().describe(
    "Only with Idempotency-Key: true when the key was seen before and nothing new was " +
      "published (id is the first publication's)",
  ),
});

/** 200 of `POST /admin/dlq/replay`. */
export const replayResponseSchema = z.looseObject({
  success: z.literal(true),
  stream: z.string(),
  replayed: z.number().int().min(0),
  ids: z.array(z.string()).describe("New ids of the replayed entries in the stream"),
});

/** 200 of `GET /health/ready`. */
export const readySchema = z.looseObject({
  status: z.literal("ready"),
  timestamp: z.string(),
});

/** 503 of `GET /health/ready`. */
export const notReadySchema = z.looseObject({
  status: z.literal("not_ready"),
  reason: z.string().describe(
    "shutting_down, redis_unavailable, circuit_open or consumer_inactive",
  ),
  timestamp: z.string(),
});

const checkStatus = z.enum(["healthy", "degraded", "unhealthy"]);

/** Body of `GET /health` (200 healthy or degraded, 503 unhealthy). */
export const healthReportSchema = z.looseObject({
  status: checkStatus,
  timestamp: z.string(),
  service: z.looseObject({
    name: z.string(),
    version: z.string(),
    uptime: z.number().int().min(0).describe("Seconds"),
    environment: z.string(),
  }),
  checks: z.looseObject({
    redis: z.looseObject({
      status: checkStatus,
      latency: z.number().nullable().describe("ms of the last PING"),
      lastCheck: z.string().nullable(),
      circuit: z.enum(["closed", "half-open", "open"]),
      error: z.string().optional(),
    }),
    eventStream: z.looseObject({
      status: checkStatus,
      consumerActive: z.boolean(),
      lastMessage: z.string().nullable(),
      stream: z.string(),
      group: z.string(),
      consumer: z.string(),
      pending: z.number().int(),
      lag: z.number().int().nullable(),
    }),
  }),
  reasons: z.array(z.string()).optional(),
});

/** 200 of `GET /admin/partitions`. */
export const partitionsReportSchema = z.looseObject({
  partitions: z.number().int().describe("STREAM_PARTITIONS (1: streams are not partitioned)"),
  streams: z.array(z.looseObject({
    stream: z.string().describe("A consumed stream (STREAM)"),
    partitions: z.array(z.looseObject({
      key: z.string().describe("The partition key, {stream:i}"),
      partition: z.number().int(),
      owner: z.string().nullable().describe("CONSUMER_NAME holding the lease; null when free"),
      leaseExpiresAt: z.string().nullable().describe("Lease expiry (ISO 8601); null when free"),
      pending: z.number().int(),
      lag: z.number().int().nullable(),
    })),
  })),
});

/** 200 of `GET /admin/streams`. */
export const streamsReportSchema = z.looseObject({
  streams: z.array(z.looseObject({
    stream: z.string(),
    length: z.number().int(),
    groups: z.array(z.looseObject({
      name: z.string(),
      consumers: z.array(z.looseObject({
        name: z.string(),
        pending: z.number().int(),
        idleMs: z.number().int(),
      })),
      pending: z.number().int(),
      lag: z.number().int().nullable(),
      lastDeliveredId: z.string(),
    })),
    deadLetter: z.looseObject({ stream: z.string(), length: z.number().int() }),
  })),
});
