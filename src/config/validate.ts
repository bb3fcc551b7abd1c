/**
 * Configuration, step 2 of 3: validate. The rules that look at more than one
 * variable, or at a variable the schema keeps as text: Redis address,
 * Sentinel or Cluster, the stream list (hash tags in cluster mode, no braces
 * with partitions), the dead-letter stream's slot, `ROUTES` (and that no route loops into a
 * consumed stream), the mutual-TLS pair. Checked even when other variables
 * failed, so that every problem is reported at once. Pure: whether the TLS
 * files exist is checked at the edge (`readTlsFiles` in src/config.ts).
 */
import { ProblemList } from "./errors.ts";
import { isHost, type ParsedEnv } from "./parse.ts";
import { parseRoutes, type Route } from "./routes.ts";
import { hashTag, partitionKeys, slotOf } from "../stream/keys.ts";

/** Sentinel or cluster node endpoint. */
export interface HostPort {
  host: string;
  port: number;
}

/** What the cross-field rules produce besides their problems. */
export interface ValidatedEnv {
  /** Set when `REDIS_SENTINELS` and `REDIS_SENTINEL_MASTER` are both valid. */
  sentinel?: { nodes: HostPort[]; master: string };
  /** Set when `REDIS_CLUSTER_NODES` is valid (and `REDIS_SENTINELS` unset). */
  cluster?: { nodes: HostPort[] };
  /** `REDIS_PORT`; 0 with Sentinel or Cluster. */
  redisPort: number;
  streams: string[];
  routes: Route[];
}

const STREAM_NAME_RE = /^[^\s,]{1,256}$/;

/** Applies the cross-field rules to `parsed`, adding their problems to `problems`. */
export function validateEnv(parsed: ParsedEnv, problems: ProblemList): ValidatedEnv {
  const env = parsed.env;
  let sentinel: ValidatedEnv["sentinel"];
  let cluster: ValidatedEnv["cluster"];
  let redisPort = 0;
  const clusterMode = env.REDIS_CLUSTER_NODES !== undefined;
  if (clusterMode) {
    const nodes = parseHostPorts(env.REDIS_CLUSTER_NODES!);
    if (typeof nodes === "string") problems.add("REDIS_CLUSTER_NODES", nodes);
    else if (env.REDIS_SENTINELS !== undefined) {
      problems.add(
        "REDIS_CLUSTER_NODES",
        "cannot be set together with REDIS_SENTINELS: use Redis Cluster or Sentinel, not both",
      );
    } else cluster = { nodes };
  } else if (env.REDIS_SENTINELS !== undefined) {
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
  } else {
    checkStreamSlots(env, streams, partitionsOf(env), clusterMode, problems);
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
  return { sentinel, cluster, redisPort, streams, routes };
}

/** STREAM_PARTITIONS when it is a valid integer (the schema reports it otherwise), else 1. */
function partitionsOf(env: Readonly<Record<string, string>>): number {
  const n = Number(env.STREAM_PARTITIONS?.trim() ?? "1");
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/**
 * The slot rules of README "Redis Cluster and partitioned streams". With
 * partitions, a stream `S` is the keys `{S:0}` … `{S:N-1}`, so `S` must have
 * no braces of its own. In cluster mode every script names the source stream
 * with the keys derived from it, so: an unpartitioned stream needs a hash tag
 * (the message suggests `{S}`), and a single `DLQ_STREAM` must hash to the
 * slot of every source key.
 */
function checkStreamSlots(
  env: Readonly<Record<string, string>>,
  streams: string[],
  partitions: number,
  clusterMode: boolean,
  problems: ProblemList,
): void {
  if (partitions > 1) {
    const braced = streams.find((s) => s.includes("{") || s.includes("}"));
    if (braced !== undefined) {
      problems.add(
        "STREAM",
        `"${braced}" contains braces: with STREAM_PARTITIONS above 1 the partition keys ` +
          `{<stream>:<i>} carry the hash tag, so name the stream without braces`,
      );
      return;
    }
  }
  if (!clusterMode) return;
  if (partitions === 1) {
    const untagged = streams.find((s) => hashTag(s) === undefined);
    if (untagged !== undefined) {
      problems.add(
        "STREAM",
        `"${untagged}" has no hash tag: in cluster mode every consumed stream needs one so that ` +
          `its dead-letter stream, checkpoint and idempotency marks share its slot; ` +
          `name it "{${untagged}}"`,
      );
      return;
    }
  }
  const dlq = env.DLQ_STREAM?.trim();
  if (dlq === undefined || dlq === "") return;
  const sources = partitions > 1 ? streams.flatMap((s) => partitionKeys(s, partitions)) : streams;
  const elsewhere = sources.find((source) => slotOf(source) !== slotOf(dlq));
  if (elsewhere !== undefined) {
    const suggestion = partitions > 1
      ? "leave DLQ_STREAM unset so that each partition gets its own <partition>:dlq"
      : `use the stream's hash tag, e.g. "{${hashTag(elsewhere)}}:dlq", or leave DLQ_STREAM ` +
        "unset for <stream>:dlq";
    problems.add(
      "DLQ_STREAM",
      `is in hash slot ${slotOf(dlq)}, but the consumed stream "${elsewhere}" is in slot ` +
        `${slotOf(elsewhere)}: in cluster mode the dead-letter stream must share the source's ` +
        `slot; ${suggestion}`,
    );
  }
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
