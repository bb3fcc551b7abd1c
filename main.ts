/**
 * The composition root: parse the configuration, build every part, start
 * them in the contract's order (spec section 3), wait for a signal, stop them
 * in reverse. Exit codes: 78 bad configuration, 1 Redis never answered or the
 * shutdown budget ran out, 0 clean shutdown.
 */
import { ConfigError, loadConfig } from "./src/config.ts";
import { delay } from "./src/clock.ts";
import { errorInfo, getLogger, setupLogging } from "./src/log.ts";
import { Metrics } from "./src/metrics.ts";
import { ConnectionManager, RedisUnavailableError } from "./src/redis/connection.ts";
import { StreamAdmin } from "./src/stream/admin.ts";
import { StreamConsumer } from "./src/stream/consumer/consumer.ts";
import { consumerSettings, keySchema } from "./src/stream/consumer/settings.ts";
import { HandlerRegistry, registerDiagnosticHandlers } from "./src/stream/handlers.ts";
import { Publisher } from "./src/stream/publisher.ts";
import { Router } from "./src/stream/router.ts";
import { createTracing, exporterProblem } from "./src/tracing.ts";
import { createApp } from "./src/http/app.ts";
import type { HealthSnapshot } from "./src/http/health.ts";

/** Exit code for invalid configuration (EX_CONFIG). */
export const EXIT_CONFIG = 78;
/** Exit code for an unreachable Redis at start, or a shutdown past its budget. */
export const EXIT_FAILURE = 1;

/** How often Redis is PINGed for /health (ms). */
const PING_INTERVAL_MS = 5000;

async function main(): Promise<number> {
  // 1. Configuration.
  let config;
  try {
    config = loadConfig(Deno.env.toObject());
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const lines = ["Invalid configuration:", ...err.lines().map((l) => `  ${l}`)];
    console.error(lines.join("\n"));
    return EXIT_CONFIG;
  }

  setupLogging({
    level: config.log.level,
    format: config.log.format,
    service: config.service.name,
    environment: config.service.environment,
    secrets: [config.redis.password, config.http.apiKey],
  });
  const log = getLogger("main");
  const startedAt = new Date();
  log.info("Starting {service} {version} ({environment})", {
    service: config.service.name,
    version: config.service.version,
    environment: config.service.environment,
  });

  // Build the parts.
  const tracing = createTracing({
    enabled: config.http.traceEnabled,
    serviceName: config.service.name,
    version: config.service.version,
  });
  if (tracing.enabled) {
    const env = Deno.env.toObject();
    const problem = exporterProblem(env);
    if (problem) log.warn(problem);
    else {
      log.info("Traces on: OTLP {protocol} to {endpoint} as service {serviceName}", {
        protocol: env.OTEL_EXPORTER_OTLP_PROTOCOL ?? "http/protobuf",
        // Only the origin: the URL could carry credentials.
        endpoint: URL.parse(env.OTEL_EXPORTER_OTLP_ENDPOINT ?? "http://localhost:4318")?.origin ??
          "(unparsable OTEL_EXPORTER_OTLP_ENDPOINT)",
        serviceName: env.OTEL_SERVICE_NAME ?? "unknown_service:deno (set OTEL_SERVICE_NAME)",
      });
    }
  }
  const metrics = new Metrics({ processMetrics: config.http.metricsEnabled });
  const connection = new ConnectionManager({
    redis: config.redis,
    clientName: `${config.service.name}:${config.stream.consumer}`,
    observer: metrics,
  });
  const registry = new HandlerRegistry();
  if (config.stream.diagnosticEvents) {
    registerDiagnosticHandlers(registry);
    log.warn(
      "Diagnostic handlers are on (DIAGNOSTIC_EVENTS=true): diagnostic.fail, diagnostic.sleep",
    );
  }
  const keys = keySchema(config);
  const consumer = new StreamConsumer({
    settings: consumerSettings(config),
    connection,
    registry,
    router: new Router(config.stream.routes),
    metrics,
    tracing,
  });
  const publisher = new Publisher({
    connection,
    serviceName: config.service.name,
    timezone: config.service.timezone,
    dedupTtlS: config.stream.dedupTtlS,
    keys,
    metrics,
    tracing,
  });
  const admin = new StreamAdmin({ connection, dlqFor: (s) => keys.dlq(s) });

  let shuttingDown = false;
  const health = (): HealthSnapshot => ({
    now: new Date(),
    startedAt,
    shuttingDown,
    service: {
      name: config.service.name,
      version: config.service.version,
      environment: config.service.environment,
    },
    redis: {
      connected: connection.connected,
      latencyMs: connection.latencyMs,
      lastCheck: connection.lastCheck,
      circuit: connection.breaker.state,
      lastError: connection.lastError,
    },
    consumer: consumer.status(),
    group: config.stream.group,
    consumerName: config.stream.consumer,
    thresholds: { lag: config.health.lagThreshold, pending: config.health.pendingThreshold },
  });
  const app = createApp({
    health,
    publisher,
    admin,
    availability: () => {
      if (!connection.connected) return { ok: false, retryAfterSeconds: 5 };
      const wait = connection.breaker.retryAfterMs();
      return wait > 0 ? { ok: false, retryAfterSeconds: Math.ceil(wait / 1000) } : { ok: true };
    },
    metrics,
    streams: config.stream.streams,
    version: config.service.version,
    http: config.http,
    tracing,
  });

  // 2. HTTP: live from here on; ready once Redis and the consumer run.
  const server = Deno.serve({
    port: config.service.port,
    hostname: "0.0.0.0",
    onListen: ({ port }) => log.info("HTTP listening on port {port}", { port }),
  }, (req, info) => app.fetch(req, { remoteAddr: info.remoteAddr }));

  // Signals: stop in order, within the budget.
  const done = Promise.withResolvers<number>();
  const timers: { pinger?: ReturnType<typeof setInterval> } = {};
  const shutdown = async (reason: string) => {
    if (shuttingDown) {
      // Already stopping (watchers and orchestrators often send two signals);
      // SHUTDOWN_TIMEOUT_MS bounds how long this takes.
      log.info("Got {reason} while shutting down; still draining", { reason });
      return;
    }
    shuttingDown = true;
    const started = Date.now();
    const budget = config.http.shutdownTimeoutMs;
    const deadline = started + budget;
    log.info("Shutting down on {reason} (budget {budgetMs} ms)", { reason, budgetMs: budget });
    const hardStop = setTimeout(() => {
      log.error(
        "Shutdown budget of {budgetMs} ms exceeded; exiting with unfinished entries pending",
        {
          budgetMs: budget,
        },
      );
      done.resolve(EXIT_FAILURE);
    }, budget);
    clearInterval(timers.pinger);
    const settled = await consumer.stop(deadline);
    if (!settled) {
      log.error("In-flight entries did not finish within the budget; they stay pending");
    }
    try {
      await Promise.race([server.shutdown(), delay(Math.max(0, deadline - Date.now()))]);
    } catch (err) {
      log.warn("HTTP shutdown: {error}", { error: errorInfo(err).message });
    }
    await connection.close();
    clearTimeout(hardStop);
    const durationMs = Date.now() - started;
    log.info("Shutdown complete in {durationMs} ms ({reason})", { durationMs, reason });
    done.resolve(settled ? 0 : EXIT_FAILURE);
  };
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(sig, () => void shutdown(sig));
  }
  // Safety net: an error no code path caught (e.g. a TLS alert node-redis gets
  // before it listens on the socket) must not end the process: a lost connection
  // never exits it; the connection manager notices and reconnects.
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

  // 3. Redis, with the configured attempts.
  try {
    await connection.connect();
  } catch (err) {
    if (shuttingDown) return await done.promise;
    const message = errorInfo(err).message;
    log.error("Giving up on Redis: {error}", { error: message });
    if (!(err instanceof RedisUnavailableError)) throw err;
    await server.shutdown().catch(() => {});
    return EXIT_FAILURE;
  }

  // PINGs behind /health; two failures in a row on an open connection force a reconnect.
  let pingFailures = 0;
  const ping = async () => {
    if (!connection.connected) return;
    try {
      await connection.ping(1000);
      pingFailures = 0;
    } catch (err) {
      if (++pingFailures >= 2) connection.forceReconnect(`PING failed: ${errorInfo(err).message}`);
    }
  };
  await ping();
  timers.pinger = setInterval(() => void ping(), PING_INTERVAL_MS);
  connection.onStateChange((state) => {
    if (state === "connected") void ping();
  });

  // 4. Groups, own pending entries, then new ones.
  for (let attempt = 1; !shuttingDown; attempt++) {
    try {
      await consumer.start();
      break;
    } catch (err) {
      log.error("Starting the consumer failed: {error}; retrying", {
        error: errorInfo(err).message,
      });
      await delay(Math.min(5000, 200 * attempt));
    }
  }
  if (!shuttingDown) log.info("Ready");
  return await done.promise;
}

/**
 * `main.ts healthcheck`: GET /health/ready on SERVICE_PORT of this host; exit 0
 * when it answers 200, else 1. For Docker's HEALTHCHECK, since the distroless
 * image has no shell or curl. Reads no other configuration.
 */
async function healthcheck(): Promise<number> {
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

if (import.meta.main) {
  let code: number;
  try {
    code = Deno.args[0] === "healthcheck" ? await healthcheck() : await main();
  } catch (err) {
    // Last resort: never a stack trace with secrets, always a non-zero exit.
    console.error(`Fatal: ${errorInfo(err).message}`);
    code = EXIT_FAILURE;
  }
  Deno.exit(code);
}
