/**
 * Configuration, step 1 of 3: parse. The zod schema of every environment
 * variable of the service contract (README, "Configuration"), with defaults,
 * and `parseEnv`, which turns the environment into typed values plus one
 * problem per invalid variable. Pure: no file, no `Deno.env`.
 */
import { z } from "npm:zod@^4.6.7";
import type { ConfigProblem } from "./errors.ts";

const SERVICE_NAME_RE = /^[a-z0-9][a-z0-9\-_.]{0,62}$/;
const HOST_RE =
  /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9\-_]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9\-_]{0,62}))*\.?$/;
const ENTRY_ID_RE = /^\d+(-\d+)?$/;
/** The most partitions a stream may have (STREAM_PARTITIONS). */
export const MAX_PARTITIONS = 1024;

/** True for a host name or an IP address (IPv6 with or without brackets). */
export function isHost(v: string): boolean {
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
  // The default needs no check: the first Intl.DateTimeFormat loads the ICU zone data (~10 ms
  // of start-up), and nothing else at start needs it.
  if (zone === "UTC") return true;
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
  REDIS_CLUSTER_NODES: optionalString,
  SERVICE_PORT: intVar(8000, 1, 65535),
  ENVIRONMENT: z.string().trim().min(1).default("development"),
  SERVICE_VERSION: z.string().trim().min(1).default("1.0.0"),
  STREAM: z.string().trim().default("event-stream"),
  STREAM_PARTITIONS: intVar(1, 1, MAX_PARTITIONS),
  PARTITION_LEASE_MS: intVar(10_000, 1_000, 600_000),
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

/** The schema's output: every variable typed, defaults applied. */
export type EnvValues = z.infer<typeof envSchema>;

/** What `parseEnv` found. */
export interface ParsedEnv {
  /** The environment without empty values (empty counts as unset). */
  env: Readonly<Record<string, string>>;
  /** The typed values; absent when any variable failed the schema. */
  values?: EnvValues;
  /** One problem per variable that failed the schema. */
  problems: ConfigProblem[];
}

/**
 * Parses `env` with the schema. Empty strings count as unset, as in most
 * 12-factor tooling.
 */
export function parseEnv(env: Readonly<Record<string, string | undefined>>): ParsedEnv {
  const cleaned: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && v !== "") cleaned[k] = v;
  }
  const parsed = envSchema.safeParse(cleaned);
  if (parsed.success) return { env: cleaned, values: parsed.data, problems: [] };
  const problems: ConfigProblem[] = [];
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
  return { env: cleaned, problems };
}
