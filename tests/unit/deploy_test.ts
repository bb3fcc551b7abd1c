/**
 * The deployment files agree with the code: `.env.example` lists every variable the configuration
 * reads; `docker-compose.yml` validates with `docker-compose config` (Compose v1) and
 * `docker compose config` (v2) where installed; `kubectl kustomize deploy/k8s` renders the
 * Deployment with probes, Service, ConfigMap, PodDisruptionBudget and HorizontalPodAutoscaler and
 * never the example Secret, and `deploy/k8s/keda` the same with a KEDA `redis-streams`
 * ScaledObject instead of the HPA. In the manifests and the compose file, probe paths are routes
 * the app serves, ports match, every variable name is one the configuration knows, and the grace
 * period exceeds SHUTDOWN_TIMEOUT_MS. Tests that need `kubectl` or `docker-compose` are ignored
 * (shown as such) where the tool is missing; the checks of the files themselves always run.
 */
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { CONFIG_VARIABLES, loadConfig } from "../../src/config.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { harness } from "../support/http_app.ts";
import { REPO_ROOT } from "../support/service.ts";

type Json = Record<string, unknown>;
type Manifest = { kind: string; metadata: { name: string }; spec?: Json; data?: Json } & Json;

/** Whether `command args…` runs and exits 0 (the tool is installed and works). */
async function works(command: string, args: string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command(command, { args, stdout: "null", stderr: "null" }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** Runs `command args…` in the repository root; its stdout, or throws with its stderr. */
async function run(command: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(command, {
    args,
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (!out.success) {
    throw new Error(`${command} ${args.join(" ")} failed (${out.code}):\n${stderr}`);
  }
  return new TextDecoder().decode(out.stdout);
}

const HAS_KUBECTL = await works("kubectl", ["version", "--client"]);
const HAS_COMPOSE_V1 = await works("docker-compose", ["version"]);
const HAS_COMPOSE_V2 = await works("docker", ["compose", "version"]);

/** Variables the configuration schema reads, plus Deno's own OpenTelemetry ones (OTEL_*). */
function isKnownVariable(name: string): boolean {
  return CONFIG_VARIABLES.includes(name) || /^OTEL_[A-Z0-9_]+$/.test(name);
}

/** SHUTDOWN_TIMEOUT_MS's default, from the configuration itself. */
const DEFAULT_SHUTDOWN_MS = loadConfig({
  REDIS_HOST: "localhost",
  REDIS_PORT: "6379",
  SERVICE_NAME: "svc",
}).shutdown.timeoutMs;
const DEFAULT_PORT = 8000;

function readYamlDocs(path: string): Manifest[] {
  const text = Deno.readTextFileSync(`${REPO_ROOT}/${path}`);
  return parseAllDocuments(text).map((d) => d.toJSON() as Manifest).filter((m) => m !== null);
}

function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text).map((d) => d.toJSON() as Manifest).filter((m) => m !== null);
}

/** The one manifest of `kind` in `docs`. */
function only(docs: Manifest[], kind: string): Manifest {
  const found = docs.filter((d) => d.kind === kind);
  assertEquals(found.length, 1, `exactly one ${kind}: ${docs.map((d) => d.kind)}`);
  return found[0];
}

/** Answers of the app (fakes, healthy) to GET `path`: a probe must be a route it serves. */
async function servedStatus(path: string): Promise<number> {
  const res = await harness().request(path);
  await res.body?.cancel();
  return res.status;
}

/** Duration of Compose (`35s`, `1m30s`, `500ms`) in milliseconds. */
function composeDurationMs(value: string): number {
  let total = 0;
  for (const [, n, unit] of value.matchAll(/(\d+(?:\.\d+)?)(ms|us|h|m|s)/g)) {
    total += Number(n) * { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001 }[unit]!;
  }
  return total;
}

/**
 * Checks of a Kubernetes rendering (or the raw files): probes on routes the app serves, one
 * port number everywhere, known variable names, grace period above the shutdown budget.
 */
async function checkManifests(docs: Manifest[]): Promise<void> {
  const configMap = only(docs, "ConfigMap");
  const deployment = only(docs, "Deployment");
  const service = only(docs, "Service");
  const data = (configMap.data ?? {}) as Record<string, string>;
  for (const name of Object.keys(data)) {
    assert(isKnownVariable(name), `ConfigMap sets ${name}, which the service does not read`);
  }
  const pod = (deployment.spec!.template as Json).spec as Json;
  const containers = pod.containers as Json[];
  assertEquals(containers.length, 1);
  const c = containers[0];
  const env = (c.env ?? []) as { name: string; value?: string }[];
  for (const { name } of env) {
    assert(isKnownVariable(name), `Deployment sets ${name}, which the service does not read`);
  }
  const envFrom = c.envFrom as Json[];
  const secretRef = envFrom.find((e) => e.secretRef)?.secretRef as Json | undefined;
  if (secretRef) assertEquals(secretRef.optional, true, "the Secret must be optional");

  // Ports: the container's `http` port is SERVICE_PORT; probes, Service and scrape use it.
  const port = Number(
    env.find((e) => e.name === "SERVICE_PORT")?.value ?? data.SERVICE_PORT ?? DEFAULT_PORT,
  );
  const ports = c.ports as { name: string; containerPort: number }[];
  const http = ports.find((p) => p.name === "http");
  assertEquals(http?.containerPort, port, "containerPort `http` is SERVICE_PORT");
  const portOf = (p: unknown) => p === "http" ? http!.containerPort : Number(p);
  const servicePorts = service.spec!.ports as Json[];
  assert(servicePorts.some((p) => portOf(p.targetPort) === port), "Service targets SERVICE_PORT");
  const annotations = ((deployment.spec!.template as Json).metadata as Json).annotations as Json;
  if (annotations?.["prometheus.io/port"]) {
    assertEquals(Number(annotations["prometheus.io/port"]), port, "prometheus.io/port");
    assertEquals(await servedStatus(String(annotations["prometheus.io/path"])), 200);
  }

  // Probes: GET on a route the app serves, on SERVICE_PORT.
  const probes = ["livenessProbe", "readinessProbe", "startupProbe"].filter((p) => c[p]);
  assert(probes.includes("livenessProbe") && probes.includes("readinessProbe"), `probes ${probes}`);
  for (const probe of probes) {
    const get = (c[probe] as Json).httpGet as { path: string; port: unknown };
    assert(get, `${probe} is an httpGet probe`);
    assertEquals(portOf(get.port), port, `${probe} port`);
    const status = await servedStatus(get.path);
    assert([200, 503].includes(status), `${probe} path ${get.path} answers ${status}`);
  }
  assertEquals((c.livenessProbe as Json & { httpGet: Json }).httpGet.path, "/health/live");
  assertEquals((c.readinessProbe as Json & { httpGet: Json }).httpGet.path, "/health/ready");

  // Grace period above the shutdown budget, so the service, not SIGKILL, ends the pod.
  const shutdownMs = Number(
    env.find((e) => e.name === "SHUTDOWN_TIMEOUT_MS")?.value ?? data.SHUTDOWN_TIMEOUT_MS ??
      DEFAULT_SHUTDOWN_MS,
  );
  const grace = Number(pod.terminationGracePeriodSeconds ?? 30);
  assert(grace * 1000 > shutdownMs, `grace ${grace} s not above SHUTDOWN_TIMEOUT_MS ${shutdownMs}`);
}

/** Checks of a KEDA ScaledObject against the ConfigMap and Deployment it scales. */
function checkScaledObject(docs: Manifest[]): void {
  const scaled = only(docs, "ScaledObject");
  const data = (only(docs, "ConfigMap").data ?? {}) as Record<string, string>;
  const spec = scaled.spec as Json;
  assertEquals((spec.scaleTargetRef as Json).name, only(docs, "Deployment").metadata.name);
  const triggers = spec.triggers as { type: string; metadata: Record<string, string> }[];
  const group = data.CONSUMER_GROUP ?? data.SERVICE_NAME;
  const streams = (data.STREAM ?? "event-stream").split(",").map((s) => s.trim());
  for (const stream of streams) {
    const t = triggers.find((t) => t.type === "redis-streams" && t.metadata.stream === stream);
    assert(t, `no redis-streams trigger for stream ${stream}`);
    assertEquals(t.metadata.consumerGroup, group, "consumerGroup is the service's group");
    assert(t.metadata.lagCount, "scales on the group's lag (lagCount)");
    for (const key of ["hostFromEnv", "portFromEnv", "passwordFromEnv", "usernameFromEnv"]) {
      const name = t.metadata[key];
      if (name !== undefined) assert(isKnownVariable(name), `${key}: ${name} is not a variable`);
    }
  }
}

Deno.test(".env.example lists every variable the configuration reads, and only those", () => {
  const text = Deno.readTextFileSync(`${REPO_ROOT}/.env.example`);
  const listed = [...text.matchAll(/^#?\s?(?:export\s+)?([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]);
  const missing = CONFIG_VARIABLES.filter((v) => !listed.includes(v));
  assertEquals(missing, [], "variables missing from .env.example");
  assertEquals(listed.filter((v) => !isKnownVariable(v)), [], "unknown variables in .env.example");
  assertEquals(listed.length, new Set(listed).size, "a variable listed twice");
  for (const v of ["RATE_LIMIT_BURST", "HEALTH_LAG_THRESHOLD", "HEALTH_PENDING_THRESHOLD"]) {
    assert(listed.includes(v), v);
  }
});

Deno.test("docker-compose.yml agrees with the code: no top-level name, variables, port, grace", () => {
  const compose = parseYaml(Deno.readTextFileSync(`${REPO_ROOT}/docker-compose.yml`)) as Json;
  assert(!("name" in compose), "top-level `name:` is rejected by Compose v1");
  const svc = (compose.services as Json).service as Json;
  const env = svc.environment as Record<string, string>;
  for (const name of Object.keys(env)) assert(isKnownVariable(name), `unknown variable ${name}`);
  const port = Number(env.SERVICE_PORT ?? DEFAULT_PORT);
  const targets = (svc.ports as string[]).map((p) => Number(String(p).split(":").at(-1)));
  assert(targets.includes(port), `ports ${svc.ports} do not reach SERVICE_PORT ${port}`);
  const shutdownMs = Number(env.SHUTDOWN_TIMEOUT_MS ?? DEFAULT_SHUTDOWN_MS);
  const grace = composeDurationMs(String(svc.stop_grace_period ?? "10s"));
  assert(grace > shutdownMs, `stop_grace_period ${grace} ms not above ${shutdownMs} ms`);
  const dockerfile = Deno.readTextFileSync(`${REPO_ROOT}/Dockerfile`);
  assert(dockerfile.includes(`EXPOSE ${port}`), "Dockerfile EXPOSEs SERVICE_PORT");
});

Deno.test({
  name: "docker-compose config (Compose v1) accepts docker-compose.yml",
  ignore: !HAS_COMPOSE_V1,
  async fn() {
    const out = parseYaml(await run("docker-compose", ["-f", "docker-compose.yml", "config"]));
    assert(((out as Json).services as Json).service, out);
  },
});

Deno.test({
  name: "docker compose config (Compose v2) accepts docker-compose.yml",
  ignore: !HAS_COMPOSE_V2,
  async fn() {
    const out = parseYaml(await run("docker", ["compose", "-f", "docker-compose.yml", "config"]));
    assert(((out as Json).services as Json).service, out);
  },
});

Deno.test("the Kubernetes files agree with the code (probes, ports, variables, grace period)", async () => {
  const base = ["configmap", "deployment", "service", "pdb"].flatMap((f) =>
    readYamlDocs(`deploy/k8s/base/${f}.yaml`)
  );
  await checkManifests(base);
  checkScaledObject([...base, ...readYamlDocs("deploy/k8s/keda/scaledobject.yaml")]);
  for (const secret of readYamlDocs("deploy/k8s/secret.example.yaml")) {
    for (const name of Object.keys((secret.stringData ?? {}) as Json)) {
      assert(isKnownVariable(name), `secret.example.yaml sets ${name}`);
    }
  }
});

Deno.test({
  name: "kubectl kustomize deploy/k8s renders the default deployment, never the Secret",
  ignore: !HAS_KUBECTL,
  async fn() {
    const docs = parseManifests(await run("kubectl", ["kustomize", "deploy/k8s"]));
    assertEquals(docs.map((d) => d.kind).sort(), [
      "ConfigMap",
      "Deployment",
      "HorizontalPodAutoscaler",
      "PodDisruptionBudget",
      "Service",
    ]);
    await checkManifests(docs);
    const hpa = only(docs, "HorizontalPodAutoscaler");
    assertEquals((hpa.spec!.scaleTargetRef as Json).name, only(docs, "Deployment").metadata.name);
  },
});

/** A KEDA layout rendered: the base's objects with a ScaledObject instead of the HPA, checked. */
async function renderKeda(dir: string): Promise<Manifest[]> {
  const docs = parseManifests(await run("kubectl", ["kustomize", dir]));
  assertEquals(docs.map((d) => d.kind).sort(), [
    "ConfigMap",
    "Deployment",
    "PodDisruptionBudget",
    "ScaledObject",
    "Service",
  ]);
  await checkManifests(docs);
  return docs;
}

Deno.test({
  name: "kubectl kustomize deploy/k8s/keda renders a redis-streams ScaledObject instead of the HPA",
  ignore: !HAS_KUBECTL,
  async fn() {
    checkScaledObject(await renderKeda("deploy/k8s/keda"));
  },
});

Deno.test({
  name:
    "kubectl kustomize deploy/k8s/keda-partitioned renders partitions and a lag-total ScaledObject",
  ignore: !HAS_KUBECTL,
  async fn() {
    const docs = await renderKeda("deploy/k8s/keda-partitioned");
    const data = (only(docs, "ConfigMap").data ?? {}) as Record<string, string>;
    const partitions = Number(data.STREAM_PARTITIONS);
    assert(partitions > 1, `STREAM_PARTITIONS ${data.STREAM_PARTITIONS}`);
    const spec = only(docs, "ScaledObject").spec as Json;
    assertEquals((spec.scaleTargetRef as Json).name, only(docs, "Deployment").metadata.name);
    assert(
      Number(spec.maxReplicaCount) <= partitions,
      "no more replicas than partitions (an instance beyond them owns none)",
    );
    const [trigger] = spec.triggers as { type: string; metadata: Record<string, string> }[];
    assertEquals(trigger.type, "prometheus");
    const group = data.CONSUMER_GROUP ?? data.SERVICE_NAME;
    assert(
      trigger.metadata.query.includes("stream_consumer_lag") &&
        trigger.metadata.query.includes(`group="${group}"`),
      `the query sums the group's exported lag: ${trigger.metadata.query}`,
    );
  },
});
