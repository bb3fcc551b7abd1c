/**
 * Configuration: the typed `Config` grouped by concern, built from the
 * environment in three pure steps (parse: src/config/parse.ts, validate:
 * src/config/validate.ts, derive: `deriveConfig` here) by `loadConfig(env)`,
 * which throws a `ConfigError` listing every problem, one per variable, with
 * secret values masked. The only file access, reading the TLS PEM files, is
 * at the edge (`readTlsFiles`, `loadConfigAndFiles`). Nothing here reads
 * `Deno.env` by itself.
 */
import { ConfigError, type ConfigProblem, ProblemList } from "./config/errors.ts";
import { type EnvValues, parseEnv } from "./config/parse.ts";
import type { Route } from "./config/routes.ts";
import { type HostPort, type ValidatedEnv, validateEnv } from "./config/validate.ts";

export { ConfigError, type ConfigProblem, SECRET_VARIABLES } from "./config/errors.ts";
export type { Route } from "./config/routes.ts";
export { CONFIG_VARIABLES } from "./config/parse.ts";
export type { HostPort } from "./config/validate.ts";

/** The validated configuration. Field comments give the variable it comes from. */
export interface Config {
  redis: {
    /** REDIS_HOST (absent with Sentinel or Cluster) */
    host: string;
    /** REDIS_PORT (absent with Sentinel or Cluster) */
    port: number;
    username?: string;
    password?: string;
    /** REDIS_TLS_ENABLED, and the paths of REDIS_TLS_CA / _CERT / _KEY (read by `readTlsFiles`) */
    tls: TlsPaths;
    sentinel?: { nodes: HostPort[]; master: string };
    /** REDIS_CLUSTER_NODES: the seed nodes of a Redis Cluster (then host and port are unused) */
    cluster?: { nodes: HostPort[] };
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
    /** STREAM_PARTITIONS: above 1, each stream S is the keys {S:0} … {S:N-1} */
    partitions: number;
    /** PARTITION_LEASE_MS: how long a partition lease lasts without renewal */
    partitionLeaseMs: number;
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
    /** REQUEST_TIMEOUT_MS */
    requestTimeoutMs: number;
    apiKey?: string;
    rateLimitPerSecond: number;
    /** RATE_LIMIT_BURST */
    rateLimitBurst: number;
    trustProxy: boolean;
    /** METRICS_ENABLED: /metrics served (and the process metrics collected) */
    metricsEnabled: boolean;
  };
  /** SHUTDOWN_TIMEOUT_MS: the graceful shutdown budget. */
  shutdown: { timeoutMs: number };
  /** TRACE_ENABLED */
  tracing: { enabled: boolean };
}

/** Whether to use TLS and the PEM files it names (paths). */
export interface TlsPaths {
  enabled: boolean;
  ca?: string;
  cert?: string;
  key?: string;
}

/** The contents of the PEM files of `TlsPaths`. */
export interface TlsPem {
  ca?: string;
  cert?: string;
  key?: string;
}

/** Options of `deriveConfig`. */
export interface DeriveOptions {
  /** Suffix of the consumer name when neither CONSUMER_NAME nor HOSTNAME is set. Default: random. */
  randomSuffix?: () => string;
}

/**
 * Configuration, step 3 of 3: derive. Builds the `Config` from valid values,
 * filling what defaults to other variables: the consumer group (SERVICE_NAME)
 * and the consumer name (HOSTNAME, else SERVICE_NAME plus a random suffix).
 * The dead-letter stream per stream is derived by the key schema (src/stream/keys.ts).
 */
export function deriveConfig(
  e: EnvValues,
  v: ValidatedEnv,
  options: DeriveOptions = {},
): Config {
  const suffix = options.randomSuffix ?? (() => crypto.randomUUID().slice(0, 8));
  return {
    redis: {
      host: e.REDIS_HOST ?? "",
      port: v.redisPort,
      username: e.REDIS_USER,
      password: e.REDIS_PW,
      tls: {
        enabled: e.REDIS_TLS_ENABLED,
        ca: e.REDIS_TLS_CA,
        cert: e.REDIS_TLS_CERT,
        key: e.REDIS_TLS_KEY,
      },
      sentinel: v.sentinel,
      cluster: v.cluster,
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
      streams: v.streams,
      partitions: e.STREAM_PARTITIONS,
      partitionLeaseMs: e.PARTITION_LEASE_MS,
      group: e.CONSUMER_GROUP ?? e.SERVICE_NAME,
      consumer: e.CONSUMER_NAME ?? e.HOSTNAME ?? `${e.SERVICE_NAME}-${suffix()}`,
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
      routes: v.routes,
      diagnosticEvents: e.DIAGNOSTIC_EVENTS,
    },
    health: {
      lagThreshold: e.HEALTH_LAG_THRESHOLD,
      pendingThreshold: e.HEALTH_PENDING_THRESHOLD,
    },
    log: { level: e.LOG_LEVEL, format: e.LOG_FORMAT },
    http: {
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
      apiKey: e.API_KEY,
      rateLimitPerSecond: e.RATE_LIMIT_PER_SECOND,
      rateLimitBurst: e.RATE_LIMIT_BURST,
      trustProxy: e.TRUST_PROXY,
      metricsEnabled: e.METRICS_ENABLED,
    },
    shutdown: { timeoutMs: e.SHUTDOWN_TIMEOUT_MS },
    tracing: { enabled: e.TRACE_ENABLED },
  };
}

/**
 * Validates `env` and returns the configuration: parse, validate, derive.
 * Pure (the TLS files are not looked at: see `loadConfigAndFiles`).
 * @throws {ConfigError} listing every invalid variable.
 */
export function loadConfig(
  env: Readonly<Record<string, string | undefined>>,
  options: DeriveOptions = {},
): Config {
  const parsed = parseEnv(env);
  const problems = new ProblemList(parsed.env, parsed.problems);
  const validated = validateEnv(parsed, problems);
  if (problems.all.length > 0 || !parsed.values) throw new ConfigError(problems.all);
  return deriveConfig(parsed.values, validated, options);
}

/** Reads a file as text (`Deno.readTextFileSync` by default); injectable for tests. */
export type ReadTextFile = (path: string) => string;

const TLS_VARIABLES = { ca: "REDIS_TLS_CA", cert: "REDIS_TLS_CERT", key: "REDIS_TLS_KEY" } as const;

/**
 * Reads the PEM files `tls` names (whether or not TLS is enabled, so a wrong
 * path is reported at start either way). The edge of configuration: the one
 * place it touches files.
 * @throws {ConfigError} naming each variable whose file is missing, not a file or unreadable.
 */
export function readTlsFiles(tls: TlsPaths, readFile: ReadTextFile = readTextFile): TlsPem {
  const pem: TlsPem = {};
  const problems: ConfigProblem[] = [];
  for (const [field, variable] of Object.entries(TLS_VARIABLES) as [keyof TlsPem, string][]) {
    const path = tls[field];
    if (path === undefined) continue;
    try {
      pem[field] = readFile(path);
    } catch (err) {
      const message = err instanceof Deno.errors.IsADirectory
        ? "is not a file"
        : "file not found or not readable";
      problems.push({ variable, value: path, message });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return pem;
}

/**
 * `loadConfig(env)` plus the files it names (`readTlsFiles`), with every
 * problem of both in one `ConfigError`: what main calls at start.
 * @throws {ConfigError} listing every invalid variable.
 */
export function loadConfigAndFiles(
  env: Readonly<Record<string, string | undefined>>,
  readFile: ReadTextFile = readTextFile,
): Config {
  let config: Config | undefined;
  let problems: readonly ConfigProblem[] = [];
  try {
    config = loadConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems = err.problems;
  }
  const reported = new Set(problems.map((p) => p.variable));
  // Paths as the schema reads them (trimmed); a variable already reported is not read.
  const path = (variable: string) =>
    reported.has(variable) ? undefined : env[variable]?.trim() || undefined;
  try {
    readTlsFiles({
      enabled: false,
      ca: path(TLS_VARIABLES.ca),
      cert: path(TLS_VARIABLES.cert),
      key: path(TLS_VARIABLES.key),
    }, readFile);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems = [...problems, ...err.problems];
  }
  if (problems.length > 0 || !config) throw new ConfigError(problems);
  return config;
}

function readTextFile(path: string): string {
  return Deno.readTextFileSync(path);
}
