/** The OpenAPI 3 document of the HTTP routes (served at GET /openapi.json). */

const errorBody = {
  type: "object",
  properties: {
    success: { type: "boolean", enum: [false] },
    error: { type: "string" },
    message: { type: "string" },
    details: {},
  },
  required: ["error"],
};

const json = (schema: unknown) => ({ "application/json": { schema } });
const err = (description: string) => ({ description, content: json(errorBody) });
const secured = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

/** Builds the document for `version`. */
export function openApiDocument(version: string): Record<string, unknown> {
  return {
    openapi: "3.0.3",
    info: {
      title: "Redis Streams service",
      version,
      description:
        "Consumes Redis Streams through consumer groups; probes, metrics, trigger, admin.",
    },
    paths: {
      "/health/live": {
        get: {
          summary: "Liveness probe; never touches Redis",
          responses: {
            "200": {
              description: "Alive",
              content: { "text/plain": { schema: { type: "string" } } },
            },
          },
        },
      },
      "/health/ready": {
        get: {
          summary: "Readiness probe",
          responses: {
            "200": {
              description: "Ready",
              content: json({
                type: "object",
                properties: { status: { enum: ["ready"] }, timestamp: { type: "string" } },
              }),
            },
            "503": {
              description: "Not ready",
              content: json({
                type: "object",
                properties: {
                  status: { enum: ["not_ready"] },
                  reason: { type: "string" },
                  timestamp: { type: "string" },
                },
              }),
            },
          },
        },
      },
      "/health": {
        get: {
          summary: "Detailed health report",
          responses: {
            "200": { description: "healthy or degraded", content: json({ type: "object" }) },
            "503": { description: "unhealthy", content: json({ type: "object" }) },
          },
        },
      },
      "/health-check": {
        get: {
          summary: "Legacy probe: ok / not ok",
          responses: { "200": { description: "ok" }, "503": { description: "not ok" } },
        },
      },
      "/metrics": {
        get: {
          summary: "Prometheus metrics (404 when METRICS_ENABLED=false)",
          responses: { "200": { description: "Prometheus text format" } },
        },
      },
      "/openapi.json": {
        get: {
          summary: "This OpenAPI document",
          responses: { "200": { description: "OpenAPI 3 document", content: json({}) } },
        },
      },
      "/trigger-test-event": {
        post: {
          summary: "Publish one test event",
          security: secured,
          parameters: [{
            name: "Idempotency-Key",
            in: "header",
            required: false,
            schema: { type: "string", maxLength: 200 },
          }],
          requestBody: {
            required: false,
            content: json({
              type: "object",
              properties: {
                event: { type: "string", pattern: "^[A-Za-z0-9_.:-]{1,100}$" },
                aggregateId: { type: "string", maxLength: 200 },
                data: { type: "object" },
                stream: { type: "string" },
              },
            }),
          },
          responses: {
            "200": {
              description: "Published",
              content: json({
                type: "object",
                properties: {
                  success: { type: "boolean" },
                  id: { type: "string" },
                  stream: { type: "string" },
                  event: { type: "string" },
                  aggregateId: { type: "string" },
                  correlationId: { type: "string" },
                },
              }),
            },
            "400": err("Malformed JSON or schema violation"),
            "401": err("Missing or wrong API key"),
            "413": err("Body over 10240 bytes"),
            "415": err("Body is not application/json"),
            "429": err("Over the rate limit (Retry-After)"),
            "503": err("Redis unavailable or breaker open (Retry-After)"),
          },
        },
      },
      "/admin/streams": {
        get: {
          summary: "Per stream: length, groups, consumers, pending, lag, DLQ length",
          security: secured,
          responses: { "200": { description: "Report" }, "401": err("API key") },
        },
      },
      "/admin/dlq/replay": {
        post: {
          summary: "Move dead-letter entries back to their stream",
          security: secured,
          requestBody: {
            required: true,
            content: json({
              type: "object",
              required: ["stream"],
              properties: { stream: { type: "string" }, count: { type: "integer", minimum: 1 } },
            }),
          },
          responses: {
            "200": { description: "Replayed" },
            "400": err("Bad request"),
            "401": err("API key"),
          },
        },
      },
    },
    components: {
      securitySchemes: {
        bearerAuth: { type: "http", scheme: "bearer" },
        apiKeyHeader: { type: "apiKey", in: "header", name: "X-API-Key" },
      },
    },
  };
}
