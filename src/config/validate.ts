/**
 * Configuration, step 2 of 3: validate. The rules that look at more than one
 * variable, or at a variable the schema keeps as text: Redis address or
 * Sentinel, the stream list, `ROUTES` (and that no route loops into a
 * consumed stream), the mutual-TLS pair. Checked even when other variables
 * failed, so that every problem is reported at once. Pure: whether the TLS
 * files exist is checked at the edge (`readTlsFiles` in src/config.ts).
 */
import { ProblemList } from "./errors.ts";
import { isHost, type ParsedEnv } from "./parse.ts";
import { parseRoutes, type Route } from "./routes.ts";

/** Sentinel endpoint. */
export interface HostPort {
  host: string;
  port: number;
}

/** What the cross-field rules produce besides their problems. */
export interface ValidatedEnv {
  /** Set when `REDIS_SENTINELS` and `REDIS_SENTINEL_MASTER` are both valid. */
  sentinel?: { nodes: HostPort[]; master: string };
  /** `REDIS_PORT`; 0 with Sentinel. */
  redisPort: number;
  streams: string[];
  routes: Route[];
}

const STREAM_NAME_RE = /^[^\s,]{1,256}$/;

/** Applies the cross-field rules to `parsed`, adding their problems to `problems`. */
export function validateEnv(parsed: ParsedEnv, problems: ProblemList): ValidatedEnv {
  const env = parsed.env;
  let sentinel: ValidatedEnv["sentinel"];
  let redisPort = 0;
  if (env.REDIS_SENTINELS !== undefined) {
    const nodes = parseHostPorts(env.REDIS_SENTINELS);
    if (typeof nodes === "string") problems.add("REDIS_SENTINELS", nodes);
    if (env.REDIS_SENTINEL_MASTER === undefined) {
      problems.add("REDIS_SENTINEL_MASTER", "is required with REDIS_SENTINELS");
    }
    if (typeof nodes !== "string" && env.REDIS_SENTINEL_MASTER !== undefined) {
      sentinel = { nodes, master: env.REDIS_SENTINEL_MASTER.trim() };
    }
  } else {
    if (env.REDIS_HOST === undefined) problems.add("REDIS_HOST", "is required");
    else if (!isHost(env.REDIS_HOST.trim())) {
      problems.add("REDIS_HOST", "must be a host name or IP address");
    }
    const p = env.REDIS_PORT?.trim();
    if (p === undefined) problems.add("REDIS_PORT", "is required");
    else if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65535) {
      problems.add("REDIS_PORT", "must be an integer from 1 to 65535");
    } else redisPort = Number(p);
  }

  const streams = (env.STREAM ?? "event-stream").split(",").map((s) => s.trim()).filter(Boolean);
  if (streams.length === 0 || streams.some((s) => !STREAM_NAME_RE.test(s))) {
    problems.add("STREAM", "must be one or more stream names separated by commas");
  } else if (new Set(streams).size !== streams.length) {
    problems.add("STREAM", "lists a stream twice");
  }

  let routes: Route[] = [];
  if (env.ROUTES !== undefined) {
    const r = parseRoutes(env.ROUTES);
    if (typeof r === "string") problems.add("ROUTES", r);
    else {
      const loop = r.find((route) => streams.includes(route.target));
      if (loop) {
        problems.add(
          "ROUTES",
          `target "${loop.target}" is a consumed stream; forwarding into it would loop`,
        );
      } else routes = r;
    }
  }

  if (env.REDIS_TLS_CERT !== undefined && env.REDIS_TLS_KEY === undefined) {
    problems.add("REDIS_TLS_KEY", "is required with REDIS_TLS_CERT (mutual TLS)");
  }
  if (env.REDIS_TLS_KEY !== undefined && env.REDIS_TLS_CERT === undefined) {
    problems.add("REDIS_TLS_CERT", "is required with REDIS_TLS_KEY (mutual TLS)");
  }
  return { sentinel, redisPort, streams, routes };
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
