/**
 * The service as a library: `createService({ handlers })` reads the
 * configuration, builds every part, starts them in the order of README
 * "Start-up and exit codes", waits for a signal, stops them in reverse, and
 * exits with the contract's code: 78 bad configuration, 1 Redis never
 * answered or the shutdown budget ran out, 0 clean shutdown. `main.ts` is
 * `createService()` with no handlers of its own (the default handler, and the
 * diagnostic ones when enabled).
 */
import { type Config, ConfigError, loadConfigAndFiles } from "./config.ts";
import { raceDeadline } from "./clock.ts";
import { HealthState } from "./health_state.ts";
import { createApp } from "./http/app.ts";
import { errorInfo, getLogger, type Logger, setupLogging } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { ClusterLink } from "./redis/cluster_link.ts";
import { ConnectionManager, type RedisLink, RedisUnavailableError } from "./redis/connection.ts";
import { Pinger, pingTiming } from "./redis/pinger.ts";
import { StreamAdmin } from "./stream/admin.ts";
import { StreamConsumer } from "./stream/consumer/consumer.ts";
import { consumerSettings } from "./stream/consumer/settings.ts";
import { HandlerRegistry } from "./stream/handlers.ts";
import { registerDiagnosticHandlers } from "./stream/diagnostic_handlers.ts";
import type { AnyHandlerDefinition } from "./stream/handler_api.ts";
import { Publisher } from "./stream/publisher.ts";
import { Router } from "./stream/router.ts";
import { createTracing, exporterProblem, exporterSummary } from "./tracing.ts";

/** Exit code for invalid configuration (EX_CONFIG). */
export const EXIT_CONFIG = 78;
/** Exit code for an unreachable Redis at start, or a shutdown past its budget. */
export const EXIT_FAILURE = 1;

/** Options of `createService`. */
export interface ServiceOptions {
  /** The service's handlers (made by `defineHandler`). Default: none (the default handler only). */
  handlers?: readonly AnyHandlerDefinition[];
  /** The environment the configuration is read from. Default: `Deno.env.toObject()`. */
  env?: Record<string, string>;
  /** `run()` ends the process with the exit code. Default true. */
  exit?: boolean;
}

/** A service built by `createService`. */
export interface Service {
  /**
   * Runs until SIGTERM / SIGINT (or a fatal start-up error) and resolves with
   * the exit code; with `exit` (the default) it ends the process with it.
   */
  run(): Promise<number>;
}

/**
 * The service with `options.handlers`: configuration from the environment,
 * signals and exit codes as README "Start-up, shutdown and exit codes" says.
 * @throws {TypeError} when two handlers name the same event type.
 */
export function createService(options: ServiceOptions = {}): Service {
  const handlers = [...(options.handlers ?? [])];
  const names = new Set<string>();
  for (const h of handlers) {
    if (names.has(h.event)) throw new TypeError(`Two handlers for ${h.event}`);
    names.add(h.event);
  }
  return {
    async run() {
      let code: number;
      try {
        code = await main(options.env ?? Deno.env.toObject(), handlers);
      } catch (err) {
        // Last resort: never a stack trace with secrets, always a non-zero exit.
        console.error(`Fatal: ${errorInfo(err).message}`);
        code = EXIT_FAILURE;
      }
      if (options.exit ?? true) Deno.exit(code);
      return code;
    },
  };
}

async function main(
  env: Record<string, string>,
  handlers: readonly AnyHandlerDefinition[],
): Promise<number> {
  // 1. Configuration.
  const config = configure(env);
  if (!config) return EXIT_CONFIG;
  const { service } = config;
  setupLogging({
    level: config.log.level,
    format: config.log.format,
    service: service.name,
    environment: service.environment,
    secrets: [config.redis.password, config.http.apiKey],
  });
  const log = getLogger("main");
  log.info("Starting {service} {version} ({environment})", {
    service: service.name,
    version: service.version,
    environment: service.environment,
  });
  keepRunningOnStrayErrors(log);

  const { app, health, pinger, consumer, connection } = compose(config, env, handlers, log);

  // 2. HTTP: live from here on; ready once Redis and the consumer run.
  const server = Deno.serve({
    port: service.port,
    hostname: "0.0.0.0",
    onListen: ({ port }) => log.info("HTTP listening on port {port}", { port }),
  }, (req, info) => app.fetch(req, { remoteAddr: info.remoteAddr }));

  // Signals: stop in reverse order, within the budget.
  const done = Promise.withResolvers<number>();
  const parts = { health, pinger, consumer, server, connection, log };
  const budgetMs = config.shutdown.timeoutMs;
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(sig, () => void shutdown(parts, sig, budgetMs, done.resolve));
  }

  // 3. Redis, with the configured attempts; then the PINGs behind /health.
  try {
    await connection.connect();
  } catch (err) {
    if (health.shuttingDown) return await done.promise;
    log.error("Giving up on Redis: {error}", { error: errorInfo(err).message });
    if (!(err instanceof RedisUnavailableError)) throw err;
    await server.shutdown().catch(() => {});
    return EXIT_FAILURE;
  }
  if (!health.shuttingDown) await pinger.start();

  // 4. Groups, own pending entries, then new ones.
  await startConsumer(consumer, health, log);
  return await done.promise;
}

/** Builds every part from the configuration; nothing is started or connected here. */
function compose(
  config: Config,
  env: Record<string, string>,
  handlers: readonly AnyHandlerDefinition[],
  log: Logger,
) {
  const { service } = config;
  const tracing = createTracing({
    enabled: config.tracing.enabled,
    serviceName: service.name,
    version: service.version,
  });
  if (tracing.enabled) {
    const problem = exporterProblem(env);
    if (problem) log.warn(problem);
    else {log.info(
        "Traces on: OTLP {protocol} to {endpoint} as {serviceName}",
        exporterSummary(env),
      );}
  }
  const metrics = new Metrics({ processMetrics: config.http.metricsEnabled });
  const clientName = `${service.name}:${config.stream.consumer}`;
  const linkOptions = { redis: config.redis, clientName, observer: metrics };
  const connection: RedisLink = config.redis.cluster
    ? new ClusterLink(linkOptions)
    : new ConnectionManager(linkOptions);
  const registry = handlerRegistry(config, handlers, log);
  const router = new Router(config.stream.routes);
  const settings = consumerSettings(config);
  const keys = settings.keys;
  const consumer = new StreamConsumer({ settings, connection, registry, router, metrics, tracing });
  const { timezone } = service;
  const dedupTtlS = config.stream.dedupTtlS;
  const publisher = new Publisher({
    connection,
    serviceName: service.name,
    timezone,
    dedupTtlS,
    keys,
    // Answer 504 before the request's own timeout (REQUEST_TIMEOUT_MS) answers 503.
    deadlineMs: Math.min(
      config.redis.connectTimeoutMs,
      Math.max(1, Math.floor(config.http.requestTimeoutMs * 0.9)),
    ),
    metrics,
    tracing,
    partitions: config.stream.partitions,
  });
  const admin = new StreamAdmin({
    connection,
    dlqFor: (s) => keys.dlq(s),
    partitions: config.stream.partitions,
    leaseFor: (p) => keys.lease(p),
    group: config.stream.group,
  });
  const health = new HealthState({
    service,
    group: config.stream.group,
    consumerName: config.stream.consumer,
    thresholds: { lag: config.health.lagThreshold, pending: config.health.pendingThreshold },
    redis: connection,
    consumer,
  });
  const pinger = new Pinger({ connection, ...pingTiming(config.redis.connectTimeoutMs) });
  const app = createApp({
    health: () => health.snapshot(),
    availability: () => health.availability(),
    publisher,
    admin,
    metrics,
    streams: config.stream.streams,
    version: service.version,
    http: config.http,
    tracing,
  });

  return { app, health, pinger, consumer, connection };
}

/**
 * Starts the consumer (groups, own pending entries, then new ones); it retries
 * transient failures itself until it runs or the service shuts down.
 */
async function startConsumer(
  consumer: StreamConsumer,
  health: HealthState,
  log: Logger,
): Promise<void> {
  try {
    await consumer.start();
  } catch (err) {
    log.error("Starting the consumer failed: {error}", { error: errorInfo(err).message });
    return;
  }
  if (!health.shuttingDown) log.info("Ready");
}

/** The configuration, or undefined after printing every problem to stderr. */
function configure(env: Record<string, string>): Config | undefined {
  try {
    return loadConfigAndFiles(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(["Invalid configuration:", ...err.lines().map((l) => `  ${l}`)].join("\n"));
    return undefined;
  }
}

/** The event handlers, with the diagnostic ones when DIAGNOSTIC_EVENTS is on. */
function handlerRegistry(
  config: Config,
  handlers: readonly AnyHandlerDefinition[],
  log: Logger,
): HandlerRegistry {
  const registry = new HandlerRegistry();
  for (const h of handlers) registry.add(h);
  if (config.stream.diagnosticEvents) {
    const before = registry.names.length;
    registerDiagnosticHandlers(registry);
    log.warn("Diagnostic handlers are on (DIAGNOSTIC_EVENTS=true): {names}", {
      names: registry.names.slice(before).join(", "),
    });
  }
  if (handlers.length > 0) {
    log.info("Handlers: {names}", { names: handlers.map((h) => h.event).join(", ") });
  }
  return registry;
}

/** What the shutdown sequence stops, in its order. */
interface StoppableParts {
  health: HealthState;
  pinger: Pinger;
  consumer: StreamConsumer;
  server: Deno.HttpServer;
  connection: RedisLink;
  log: Logger;
}

/**
 * SIGTERM / SIGINT: readiness 503 at once; stop reading, let in-flight entries
 * finish and settle; drain HTTP; close Redis. `exit` gets 0 when all of it fit
 * in `budgetMs`, else 1 (at the latest when the budget runs out).
 */
async function shutdown(
  parts: StoppableParts,
  reason: string,
  budgetMs: number,
  exit: (code: number) => void,
): Promise<void> {
  const { health, log } = parts;
  if (health.shuttingDown) {
    // Already stopping (watchers and orchestrators often send two signals);
    // SHUTDOWN_TIMEOUT_MS bounds how long this takes.
    log.info("Got {reason} while shutting down; still draining", { reason });
    return;
  }
  health.markShuttingDown();
  const started = Date.now();
  const deadline = started + budgetMs;
  log.info("Shutting down on {reason} (budget {budgetMs} ms)", { reason, budgetMs });
  const hardStop = setTimeout(() => {
    log.error(
      "Shutdown budget of {budgetMs} ms exceeded; exiting with unfinished entries pending",
      {
        budgetMs,
      },
    );
    exit(EXIT_FAILURE);
  }, budgetMs);
  parts.pinger.stop();
  const settled = await parts.consumer.stop(deadline);
  if (!settled) log.error("In-flight entries did not finish within the budget; they stay pending");
  try {
    await raceDeadline(parts.server.shutdown(), Math.max(0, deadline - Date.now()), undefined);
  } catch (err) {
    log.warn("HTTP shutdown: {error}", { error: errorInfo(err).message });
  }
  await parts.connection.close();
  clearTimeout(hardStop);
  const durationMs = Date.now() - started;
  log.info("Shutdown complete in {durationMs} ms ({reason})", { durationMs, reason });
  exit(settled ? 0 : EXIT_FAILURE);
}

/**
 * Safety net: an error no code path caught (e.g. a TLS alert node-redis gets
 * before it listens on the socket) must not end the process: a lost
 * connection never exits it; the connection manager notices and reconnects.
 */
function keepRunningOnStrayErrors(log: Logger): void {
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    log.error("Uncaught error (kept running): {error}", { error: errorInfo(e.error).message });
  });
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    log.error("Unhandled rejection (kept running): {error}", {
      error: errorInfo(e.reason).message,
    });
  });
}

/**
 * `main.ts healthcheck`: GET /health/ready on SERVICE_PORT of this host; exit 0
 * when it answers 200, else 1. For Docker's HEALTHCHECK, since the distroless
 * image has no shell or curl. Reads no other configuration.
 */
export async function healthcheck(): Promise<number> {
  const port = Number(Deno.env.get("SERVICE_PORT") ?? "8000");
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health/ready`, {
      signal: AbortSignal.timeout(3000),
    });
    await res.body?.cancel();
    return res.status === 200 ? 0 : EXIT_FAILURE;
  } catch {
    return EXIT_FAILURE;
  }
}
