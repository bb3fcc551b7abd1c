/**
 * The OpenAPI 3.1 document of the HTTP routes (served at GET /openapi.json):
 * every route with every status it can answer. Body schemas come from the zod
 * schemas of `schemas.ts` through `z.toJSONSchema` (JSON Schema 2020-12, the
 * dialect of OpenAPI 3.1), so the document and the code cannot drift apart.
 */
import { z } from "npm:zod@^4.6.7";
import {
  DEFAULT_REPLAY_COUNT,
  errorSchema,
  healthReportSchema,
  MAX_REPLAY_COUNT,
  notReadySchema,
  partitionsReportSchema,
  readySchema,
  replayRequestSchema,
  replayResponseSchema,
  streamsReportSchema,
  triggerRequestSchema,
  triggerResponseSchema,
} from "./schemas.ts";

type Json = Record<string, unknown>;

/** JSON Schema of `schema` for OpenAPI 3.1 (`io`: request bodies are read as input). */
function jsonSchema(schema: z.ZodType, io: "input" | "output"): Json {
  const out = z.toJSONSchema(schema, { io }) as Json;
  delete out.$schema; // the document's dialect already is 2020-12
  return out;
}

const ref = (kind: "schemas" | "responses" | "headers", name: string) => ({
  $ref: `#/components/${kind}/${name}`,
});
const json = (schemaName: string) => ({
  "application/json": { schema: ref("schemas", schemaName) },
});
const text = (example?: string) => ({
  "text/plain": { schema: { type: "string", ...(example ? { examples: [example] } : {}) } },
});
const correlationHeader = { "X-Correlation-ID": ref("headers", "X-Correlation-ID") };

/** A response: description, body and the headers every answer carries (plus `headers`). */
function response(
  description: string,
  content?: Json,
  headers: Record<string, unknown> = {},
): Json {
  return {
    description,
    headers: { ...correlationHeader, ...headers },
    ...(content ? { content } : {}),
  };
}

/** An error response with the one error body. */
function error(description: string, headers: Record<string, unknown> = {}): Json {
  return response(description, json("Error"), headers);
}

const retryAfter = { "Retry-After": ref("headers", "Retry-After") };

/** Statuses every operation can answer. */
const common = {
  "404": ref("responses", "NotFound"),
  "405": ref("responses", "MethodNotAllowed"),
};

const secured = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

/** Builds the document for `version`. */
export function openApiDocument(version: string): Json {
  return {
    openapi: "3.1.0",
    info: {
      title: "Redis Streams service",
      version,
      description: "Consumes Redis Streams through consumer groups; probes, metrics, " +
        "trigger, admin. Every answer carries X-Correlation-ID; every 4xx and 5xx answer " +
        'is {"success": false, "error", "message"} (plus "details" where useful). A known ' +
        "path with a trailing slash answers as the path without it. HEAD is answered " +
        "wherever GET is.",
    },
    paths: {
      "/health/live": {
        get: {
          operationId: "live",
          summary: "Liveness probe; never touches Redis",
          responses: { "200": response("Alive", text("OK")), ...common },
        },
      },
      "/health/ready": {
        get: {
          operationId: "ready",
          summary: "Readiness probe: Redis answers and the consumer runs",
          responses: {
            "200": response("Ready", json("Ready")),
            "503": response(
              "Not ready (Redis away, breaker open, consumer not running, shutting down)",
              json("NotReady"),
            ),
            ...common,
          },
        },
      },
      "/health": {
        get: {
          operationId: "health",
          summary: "Detailed health report",
          responses: {
            "200": response("healthy or degraded", json("HealthReport")),
            "503": response(
              "unhealthy (Redis unreachable, breaker open, or no consumer running)",
              json("HealthReport"),
            ),
            ...common,
          },
        },
      },
      "/health-check": {
        get: {
          operationId: "healthCheck",
          summary: "Legacy probe, same rule as /health/ready",
          responses: {
            "200": response("Ready", text("ok")),
            "503": response("Not ready", text("not ok")),
            ...common,
          },
        },
      },
      "/metrics": {
        get: {
          operationId: "metrics",
          summary: "Prometheus metrics",
          responses: {
            "200": response("Prometheus text format 0.0.4", text()),
            "404": response("METRICS_ENABLED=false (or an unknown path)", json("Error")),
            "405": ref("responses", "MethodNotAllowed"),
          },
        },
      },
      "/openapi.json": {
        get: {
          operationId: "openapi",
          summary: "This OpenAPI document",
          responses: {
            "200": response("OpenAPI 3.1 document", {
              "application/json": { schema: { type: "object" } },
            }),
            ...common,
          },
        },
      },
      "/trigger-test-event": {
        post: {
          operationId: "triggerTestEvent",
          summary: "Publish one event (empty body: a default manual_test event)",
          security: secured,
          parameters: [{
            name: "Idempotency-Key",
            in: "header",
            required: false,
            description: "Publishes once per key (for DEDUP_TTL_S); a repeat answers the first " +
              "id with duplicate: true",
            schema: { type: "string", pattern: "^[\\x21-\\x7e]{1,200}$" },
          }],
          requestBody: {
            required: false,
            content: json("TriggerRequest"),
          },
          responses: {
            "200": response("Published (or a duplicate of an Idempotency-Key)", json("Trigger")),
            "400": error("Malformed JSON (invalid_json) or schema violation (validation_failed)"),
            "401": ref("responses", "Unauthorized"),
            "413": ref("responses", "PayloadTooLarge"),
            "415": ref("responses", "UnsupportedMediaType"),
            "429": error("Over the rate limit (rate_limited)", retryAfter),
            "500": ref("responses", "InternalError"),
            "503": error(
              "Redis unavailable or breaker open, nothing was sent to Redis " +
                "(redis_unavailable, circuit_open); or the request took over REQUEST_TIMEOUT_MS " +
                "(timeout)",
              retryAfter,
            ),
            "504": error(
              "outcome_unknown: the XADD was sent and no answer came within " +
                "REQUEST_TIMEOUT_MS; the event may have been published (no Retry-After: retry " +
                "safely with an Idempotency-Key)",
            ),
            ...common,
          },
        },
      },
      "/admin/streams": {
        get: {
          operationId: "adminStreams",
          summary: "Per stream: length, groups, consumers, pending, lag, dead-letter length",
          security: secured,
          responses: {
            "200": response("Report", json("StreamsReport")),
            "401": ref("responses", "Unauthorized"),
            "500": ref("responses", "InternalError"),
            "503": error("Redis unavailable or breaker open", retryAfter),
            ...common,
          },
        },
      },
      "/admin/partitions": {
        get: {
          operationId: "adminPartitions",
          summary: "Per partitioned stream and partition: key, owner, lease expiry, pending, lag",
          description: "Empty `streams` when STREAM_PARTITIONS is 1.",
          security: secured,
          responses: {
            "200": response("Report", json("PartitionsReport")),
            "401": ref("responses", "Unauthorized"),
            "500": ref("responses", "InternalError"),
            "503": error("Redis unavailable or breaker open", retryAfter),
            ...common,
          },
        },
      },
      "/admin/dlq/replay": {
        post: {
          operationId: "adminDlqReplay",
          summary: "Move dead-letter entries back to their stream",
          description: `Moves at most count (1 to ${MAX_REPLAY_COUNT}, default ` +
            `${DEFAULT_REPLAY_COUNT}) entries. Same body rules as /trigger-test-event. ` +
            "A partitioned stream (STREAM_PARTITIONS > 1): each partition's dead letters go " +
            "back into that partition.",
          security: secured,
          requestBody: { required: true, content: json("ReplayRequest") },
          responses: {
            "200": response("Replayed", json("Replay")),
            "400": error(
              "Malformed JSON (invalid_json), schema violation or unknown stream " +
                "(validation_failed)",
            ),
            "401": ref("responses", "Unauthorized"),
            "413": ref("responses", "PayloadTooLarge"),
            "415": ref("responses", "UnsupportedMediaType"),
            "500": ref("responses", "InternalError"),
            "503": error("Redis unavailable or breaker open", retryAfter),
            ...common,
          },
        },
      },
    },
    components: {
      schemas: {
        Error: jsonSchema(errorSchema, "output"),
        TriggerRequest: jsonSchema(triggerRequestSchema, "input"),
        Trigger: jsonSchema(triggerResponseSchema, "output"),
        ReplayRequest: jsonSchema(replayRequestSchema, "input"),
        Replay: jsonSchema(replayResponseSchema, "output"),
        Ready: jsonSchema(readySchema, "output"),
        NotReady: jsonSchema(notReadySchema, "output"),
        HealthReport: jsonSchema(healthReportSchema, "output"),
        StreamsReport: jsonSchema(streamsReportSchema, "output"),
        PartitionsReport: jsonSchema(partitionsReportSchema, "output"),
      },
      responses: {
        NotFound: error("not_found: no such path"),
        MethodNotAllowed: error(
          "method_not_allowed: the path exists, not with this method; Allow lists its methods",
          { Allow: ref("headers", "Allow") },
        ),
        Unauthorized: error(
          "unauthorized: API_KEY is set and neither Authorization: Bearer nor X-API-Key " +
            "carries it",
          { "WWW-Authenticate": { required: true, schema: { type: "string" } } },
        ),
        PayloadTooLarge: error("payload_too_large: body over 10240 bytes"),
        UnsupportedMediaType: error(
          "unsupported_media_type: a non-empty body that is not application/json",
        ),
        InternalError: error("internal_error (no details; the log has them)"),
      },
      headers: {
        "X-Correlation-ID": {
          description: "The request's own when it matches [A-Za-z0-9._:-]{1,128}, else a UUID",
          required: true,
          schema: { type: "string", pattern: "^[A-Za-z0-9._:-]{1,128}$" },
        },
        "Retry-After": {
          description: "Seconds to wait before retrying",
          required: true,
          schema: { type: "string", pattern: "^[0-9]+$" },
        },
        Allow: {
          description: "Methods of the path",
          required: true,
          schema: { type: "string", examples: ["GET, HEAD", "POST"] },
        },
      },
      securitySchemes: {
        bearerAuth: { type: "http", scheme: "bearer" },
        apiKeyHeader: { type: "apiKey", in: "header", name: "X-API-Key" },
      },
    },
  };
}
