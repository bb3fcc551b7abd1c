/**
 * Configuration: one zod schema for every environment variable of the service
 * contract (spec section 2), with defaults. `loadConfig(env)` returns a typed
 * `Config` or throws a `ConfigError` listing every problem, one per variable,
 * with secret values masked. Nothing here reads `Deno.env` by itself.
 */
import { z } from "zod";
import { parseRoutes, type Route } from "./stream/router.ts";

/** Variables whose values are never shown, not even in configuration errors. */
export const SECRET_VARIABLES: ReadonlySet<string> = new Set([
  "REDIS_PW",
  "API_KEY",
  "REDIS_TLS_KEY",
]);

/** One problem with one variable. */
export interface ConfigProblem {
  variable: string;
  value: string | undefined;
  message: string;
}

/** Thrown by `loadConfig` when the environment is invalid; main maps it to exit 78. */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    super(`Invalid configuration: ${problems.map((p) => p.variable).join(", ")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }

  /** One line per problem: `NAME=value: what is wrong` (secrets masked). */
  lines(): string[] {
    return this.problems.map((p) =>
      `${p.variable}=${maskValue(p.variable, p.value)}: ${p.message}`
    );
  }
}

function maskValue(variable: string, value: string | undefined): string {
  if (value === undefined) return "(unset)";
  if (SECRET_VARIABLES.has(variable)) return "***";
  return JSON.stringify(value.length > 200 ? value.slice(0, 200) + "…" : value);
}

const SERVICE_NAME_RE = /^[a-z0-9][a-z0-9\-_.]{0,62}$/;
const HOST_RE =
  /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9\-_]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9\-_]{0,62}))*\.?$/;
const STREAM_NAME_RE = /^[^\s,]{1,256}$/;
const ENTRY_ID_RE = /^\d+(-\d+)?$/;

function isHost(v: string): boolean {
  if (HOST_RE.test(v)) return true;
  // IPv6 literal, with or without brackets.
  return /^\[?[0-9A-Fa-f:.]+\]?$/.test(v) && v.includes(":");
}

const optionalString = z.string().trim().min(1).optional();

function intVar(def: number, min: number, max: number = Number.MAX_SAFE_INTEGER) {
  return z.string().trim().default(String(def)).transform((s, ctx) => {
    if (!/^-?\d+$/.test(s)) {
      ctx.addIssue({ code: "custom", message: `must be an integer from ${min} to ${max}` });
      return z.NEVER;
    }
    const n = Number(s);
    if (n < min || n > max) {
      ctx.addIssue({ code: "custom", message: `must be an integer from ${min} to ${max}` });
      return z.NEVER;
    }
    return n;
  });
}

function boolVar(def: boolean) {
  return z.string().trim().toLowerCase().default(String(def)).transform((s, ctx) => {
    if (s === "true" || s === "1" || s === "yes") return true;
    if (s === "false" || s === "0" || s === "no") return false;
    ctx.addIssue({ code: "custom", message: "must be true or false" });
    return z.NEVER;
  });
}

function isValidTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

const envSchema = z.object({
  REDIS_HOST: optionalString,
  REDIS_PORT: z.string().trim().optional(),
  SERVICE_NAME: z.string({ error: "is required" }).trim().regex(SERVICE_NAME_RE, {
    message: "must match [a-z0-9][a-z0-9-_.]{0,62}",
  }),
  REDIS_USER: optionalString,
  REDIS_PW: z.string().optional(),
  REDIS_TLS_ENABLED: boolVar(false),
  REDIS_TLS_CA: optionalString,
  REDIS_TLS_CERT: optionalString,
  REDIS_TLS_KEY: optionalString,
  REDIS_SENTINELS: optionalString,
  REDIS_SENTINEL_MASTER: optionalString,
  SERVICE_PORT: intVar(8000, 1, 65535),
  ENVIRONMENT: z.string().trim().min(1).default("development"),
  SERVICE_VERSION: z.string().trim().min(1).default("1.0.0"),
  STREAM: z.string().trim().default("event-stream"),
  CONSUMER_GROUP: optionalString,
  CONSUMER_NAME: optionalString,
  HOSTNAME: optionalString,
  STREAM_START_ID: z.string().trim().default("$").refine(
    (s) => s === "$" || ENTRY_ID_RE.test(s),
    { message: "must be $, 0 or an entry id like 1700000000000-0" },
  ),
  BATCH_SIZE: intVar(100, 1, 10_000),
  BLOCK_MS: intVar(5000, 1, 600_000),
  MAX_IN_FLIGHT: intVar(1000, 1, 1_000_000),
  HANDLER_CONCURRENCY: intVar(16, 1, 10_000),
  CLAIM_IDLE_MS: intVar(60_000, 10, 86_400_000),
  MAX_DELIVERIES: intVar(5, 1, 1000),
  DLQ_STREAM: optionalString,
  DEDUP_TTL_S: intVar(86_400, 1, 31_536_000),
  STREAM_RETENTION_MS: intVar(86_400_000, 0),
  ROUTES: optionalString,
  LOG_LEVEL: z.string().trim().toUpperCase().default("INFO").pipe(
    z.enum(["ERROR", "WARN", "INFO", "DEBUG"], { error: "must be ERROR, WARN, INFO or DEBUG" }),
  ),
  LOG_FORMAT: z.string().trim().toLowerCase().default("text").pipe(
    z.enum(["text", "json"], { error: "must be text or json" }),
  ),
  CONNECTION_TIMEOUT: intVar(10_000, 1, 600_000),
  MAX_RETRY_ATTEMPTS: intVar(3, 1, 1000),
  RETRY_DELAYS: z.string().trim().default("5000,15000,30000").transform((s, ctx) => {
    const parts = s.split(",").map((p) => p.trim());
    if (parts.some((p) => !/^\d+$/.test(p) || Number(p) > 3_600_000)) {
      ctx.addIssue({
        code: "custom",
        message: "must be a comma-separated list of delays in ms (0 to 3600000)",
      });
      return z.NEVER;
    }
    return parts.map(Number);
  }),
  CIRCUIT_FAILURE_THRESHOLD: intVar(5, 1, 10_000),
  CIRCUIT_RESET_MS: intVar(30_000, 1, 3_600_000),
  SHUTDOWN_TIMEOUT_MS: intVar(30_000, 100, 3_600_000),
  REQUEST_TIMEOUT_MS: intVar(30_000, 1, 3_600_000),
  API_KEY: z.string().optional(),
  RATE_LIMIT_PER_SECOND: z.string().trim().default("1").transform((s, ctx) => {
    const n = Number(s);
    if (!/^\d+(\.\d+)?$/.test(s) || !(n > 0) || n > 1_000_000) {
      ctx.addIssue({ code: "custom", message: "must be a number greater than 0" });
      return z.NEVER;
    }
    return n;
  }),
  RATE_LIMIT_BURST: intVar(10, 1, 1_000_000),
  TRUST_PROXY: boolVar(false),
  METRICS_ENABLED: boolVar(true),
  TRACE_ENABLED: boolVar(false),
  TIMEZONE: z.string().trim().default("UTC").refine(isValidTimeZone, {
    message: "must be an IANA time zone such as UTC or Europe/Amsterdam",
  }),
  DIAGNOSTIC_EVENTS: boolVar(false),
  HEALTH_LAG_THRESHOLD: intVar(10_000, 0),
  HEALTH_PENDING_THRESHOLD: intVar(10_000, 0),
});

/** Names of every variable the configuration schema reads (checked against .env.example, deploy/). */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

/** Sentinel endpoint. */
export interface HostPort {
  host: string;
  port: number;
}

/** The validated configuration. Field comments give the variable it comes from. */
export interface Config {
  redis: {
    /** REDIS_HOST (absent with Sentinel) */
    host: string;
    /** REDIS_PORT (absent with Sentinel) */
    port: number;
    username?: string;
    password?: string;
    tls: { enabled: boolean; ca?: string; cert?: string; key?: string };
    sentinel?: { nodes: HostPort[]; master: string };
    connectTimeoutMs: number;
    maxRetryAttempts: number;
    retryDelaysMs: number[];
    circuitFailureThreshold: number;
    circuitResetMs: number;
  };
  service: {
    name: string;
    port: number;
    environment: string;
    version: string;
    timezone: string;
  };
  stream: {
    streams: string[];
    group: string;
    consumer: string;
    startId: string;
    batchSize: number;
    blockMs: number;
    maxInFlight: number;
    handlerConcurrency: number;
    claimIdleMs: number;
    maxDeliveries: number;
    /** DLQ_STREAM; `undefined` means `<stream>:dlq` per stream */
    dlqStream?: string;
    dedupTtlS: number;
    retentionMs: number;
    routes: Route[];
    diagnosticEvents: boolean;
  };
  health: { lagThreshold: number; pendingThreshold: number };
  log: { level: "ERROR" | "WARN" | "INFO" | "DEBUG"; format: "text" | "json" };
  http: {
    shutdownTimeoutMs: number;
    requestTimeoutMs: number;
    apiKey?: string;
    rateLimitPerSecond: number;
    /** RATE_LIMIT_BURST */
    rateLimitBurst: number;
    trustProxy: boolean;
    metricsEnabled: boolean;
    traceEnabled: boolean;
  };
}

/** The dead-letter stream for `stream` under `config`. */
export function dlqStreamFor(config: Config, stream: string): string {
  return config.stream.dlqStream ?? `${stream}:dlq`;
}

function parseHostPorts(s: string): HostPort[] | string {
  const out: HostPort[] = [];
  for (const part of s.split(",").map((p) => p.trim()).filter(Boolean)) {
    const m = /^(.+):(\d{1,5})$/.exec(part);
    if (!m || !isHost(m[1]) || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      return `"${part}" is not host:port`;
    }
    out.push({ host: m[1].replace(/^\[|\]$/g, ""), port: Number(m[2]) });
  }
  return out.length ? out : "must list at least one host:port";
}

function randomSuffix(): string {
  return crypto.randomUUID().slice(0, 8);
}

/**
 * Validates `env` and returns the configuration.
 * @throws {ConfigError} listing every invalid variable.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  // Empty strings count as unset, as in most 12-factor tooling.
  const cleaned: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && v !== "") cleaned[k] = v;
  }
  const problems: ConfigProblem[] = [];
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const seen = new Set<string>();
    for (const issue of parsed.error.issues) {
      const variable = String(issue.path[0] ?? "environment");
      if (seen.has(variable)) continue;
      seen.add(variable);
      const message = cleaned[variable] === undefined && issue.code === "invalid_type"
        ? "is required"
        : issue.message;
      problems.push({ variable, value: cleaned[variable], message });
    }
  }
  const e = parsed.success ? parsed.data : undefined;
  // One problem per variable: a cross-field rule does not repeat a variable the
  // schema already reported (e.g. a whitespace-only REDIS_HOST).
  const problem = (variable: string, message: string) => {
    if (problems.some((p) => p.variable === variable)) return;
    problems.push({ variable, value: cleaned[variable], message });
  };

  // Cross-field rules, checked even when other variables failed, so that every
  // problem is reported at once.
  let sentinel: Config["redis"]["sentinel"];
  let redisPort = 0;
  if (cleaned.REDIS_SENTINELS !== undefined) {
    const nodes = parseHostPorts(cleaned.REDIS_SENTINELS);
    if (typeof nodes === "string") problem("REDIS_SENTINELS", nodes);
    if (cleaned.REDIS_SENTINEL_MASTER === undefined) {
      problem("REDIS_SENTINEL_MASTER", "is required with REDIS_SENTINELS");
    }
    if (typeof nodes !== "string" && cleaned.REDIS_SENTINEL_MASTER !== undefined) {
      sentinel = { nodes, master: cleaned.REDIS_SENTINEL_MASTER.trim() };
    }
  } else {
    if (cleaned.REDIS_HOST === undefined) problem("REDIS_HOST", "is required");
    else if (!isHost(cleaned.REDIS_HOST.trim())) {
      problem("REDIS_HOST", "must be a host name or IP address");
    }
    const p = cleaned.REDIS_PORT?.trim();
    if (p === undefined) problem("REDIS_PORT", "is required");
    else if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65535) {
      problem("REDIS_PORT", "must be an integer from 1 to 65535");
    } else redisPort = Number(p);
  }

  const streams = (cleaned.STREAM ?? "event-stream").split(",").map((s) => s.trim()).filter(
    Boolean,
  );
  if (streams.length === 0 || streams.some((s) => !STREAM_NAME_RE.test(s))) {
    problem("STREAM", "must be one or more stream names separated by commas");
  } else if (new Set(streams).size !== streams.length) {
    problem("STREAM", "lists a stream twice");
  }

  let routes: Route[] = [];
  if (cleaned.ROUTES !== undefined) {
    const r = parseRoutes(cleaned.ROUTES);
    if (typeof r === "string") problem("ROUTES", r);
    else {
      const loop = r.find((route) => streams.includes(route.target));
      if (loop) {
        problem(
          "ROUTES",
          `target "${loop.target}" is a consumed stream; forwarding into it would loop`,
        );
      } else routes = r;
    }
  }

  if (cleaned.REDIS_TLS_CERT !== undefined && cleaned.REDIS_TLS_KEY === undefined) {
    problem("REDIS_TLS_KEY", "is required with REDIS_TLS_CERT (mutual TLS)");
  }
  if (cleaned.REDIS_TLS_KEY !== undefined && cleaned.REDIS_TLS_CERT === undefined) {
    problem("REDIS_TLS_CERT", "is required with REDIS_TLS_KEY (mutual TLS)");
  }
  for (const v of ["REDIS_TLS_CA", "REDIS_TLS_CERT", "REDIS_TLS_KEY"]) {
    const path = cleaned[v];
    if (path === undefined) continue;
    try {
      if (!Deno.statSync(path).isFile) problem(v, "is not a file");
    } catch {
      problem(v, "file not found or not readable");
    }
  }

  if (problems.length > 0 || !e) throw new ConfigError(problems);

  const consumer = e.CONSUMER_NAME ?? e.HOSTNAME ?? `${e.SERVICE_NAME}-${randomSuffix()}`;
  return {
    redis: {
      host: e.REDIS_HOST ?? "",
      port: redisPort,
      username: e.REDIS_USER,
      password: e.REDIS_PW,
      tls: {
        enabled: e.REDIS_TLS_ENABLED,
        ca: e.REDIS_TLS_CA,
        cert: e.REDIS_TLS_CERT,
        key: e.REDIS_TLS_KEY,
      },
      sentinel,
      connectTimeoutMs: e.CONNECTION_TIMEOUT,
      maxRetryAttempts: e.MAX_RETRY_ATTEMPTS,
      retryDelaysMs: e.RETRY_DELAYS,
      circuitFailureThreshold: e.CIRCUIT_FAILURE_THRESHOLD,
      circuitResetMs: e.CIRCUIT_RESET_MS,
    },
    service: {
      name: e.SERVICE_NAME,
      port: e.SERVICE_PORT,
      environment: e.ENVIRONMENT,
      version: e.SERVICE_VERSION,
      timezone: e.TIMEZONE,
    },
    stream: {
      streams,
      group: e.CONSUMER_GROUP ?? e.SERVICE_NAME,
      consumer,
      startId: e.STREAM_START_ID,
      batchSize: e.BATCH_SIZE,
      blockMs: e.BLOCK_MS,
      maxInFlight: e.MAX_IN_FLIGHT,
      handlerConcurrency: e.HANDLER_CONCURRENCY,
      claimIdleMs: e.CLAIM_IDLE_MS,
      maxDeliveries: e.MAX_DELIVERIES,
      dlqStream: e.DLQ_STREAM,
      dedupTtlS: e.DEDUP_TTL_S,
      retentionMs: e.STREAM_RETENTION_MS,
      routes,
      diagnosticEvents: e.DIAGNOSTIC_EVENTS,
    },
    health: {
      lagThreshold: e.HEALTH_LAG_THRESHOLD,
      pendingThreshold: e.HEALTH_PENDING_THRESHOLD,
    },
    log: { level: e.LOG_LEVEL, format: e.LOG_FORMAT },
    http: {
      shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
      apiKey: e.API_KEY,
      rateLimitPerSecond: e.RATE_LIMIT_PER_SECOND,
      rateLimitBurst: e.RATE_LIMIT_BURST,
      trustProxy: e.TRUST_PROXY,
      metricsEnabled: e.METRICS_ENABLED,
      traceEnabled: e.TRACE_ENABLED,
    },
  };
}
