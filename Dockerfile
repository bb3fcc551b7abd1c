# Container image of redis-stream-service: a single `deno compile` executable on distroless.
#
#   docker build -t redis-stream-service .
#   docker run --rm -p 8000:8000 -e REDIS_HOST=... -e REDIS_PORT=6379 \
#     -e SERVICE_NAME=redis-stream-service redis-stream-service
#
# Configuration comes from the environment only (README, Configuration); no .env file is baked in.

# The one Deno version of the project: the same in scripts/bootstrap.sh (DENO_VERSION) and the README.
ARG DENO_VERSION=2.9.6

# --- build -------------------------------------------------------------------------------------
FROM denoland/deno:${DENO_VERSION} AS builder
WORKDIR /app

# Dependencies first, so that this layer is cached while only sources change.
# --frozen: fail instead of silently resolving versions other than those in deno.lock.
COPY deno.json deno.lock ./
RUN deno install --frozen

# Sources (tests, benchmarks, deploy files and local state are left out by .dockerignore).
COPY . .
# Type-checks and writes dist/redis-stream-service with the `compile` task of deno.json:
#   deno compile --allow-net --allow-env --allow-read --no-prompt ...
# the same least-privilege flags as `deno task start` (a test keeps them equal): network (HTTP
# server, Redis), environment (configuration), read (TLS PEM files named by REDIS_TLS_*); no
# --allow-sys, --allow-write, --allow-run or --allow-ffi, and no -A.
RUN deno task compile

# --- run ---------------------------------------------------------------------------------------
# glibc and libgcc, no shell, no package manager; runs as uid/gid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
WORKDIR /app
COPY --from=builder /app/dist/redis-stream-service /app/redis-stream-service

USER nonroot
ENV SERVICE_PORT=8000
EXPOSE 8000

# The image has no shell or curl: the binary probes itself (`healthcheck` mode: GET /health/ready
# on SERVICE_PORT, exit 0 when 200). Kubernetes uses its own HTTP probes instead (deploy/k8s).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/app/redis-stream-service", "healthcheck"]

# The service is PID 1 and handles SIGTERM itself (graceful shutdown within SHUTDOWN_TIMEOUT_MS).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/redis-stream-service"]
