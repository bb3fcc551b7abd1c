/**
 * The faults of the chaos soak and how long the service takes to recover from each:
 *
 * - `kill-instance`: SIGKILL of one instance; its supervisor starts a replacement at once;
 * - `kill-redis`: SIGKILL of Redis, down for 0.5–3 s, restarted on the same port and append-only
 *   file;
 * - `pause-redis`: Redis frozen with SIGSTOP for `CONNECTION_TIMEOUT` + 3 s, then SIGCONT;
 * - `pause-instance`: one instance frozen with SIGSTOP for `CLAIM_IDLE_MS` + 1–3 s (so that the
 *   other claims its entries), then SIGCONT.
 *
 * After the fault ends, {@linkcode measureRecovery} times: every instance ready again, the route
 * target growing again, and the group caught up with everything produced before the fault ended.
 *
 * @module
 */

import type { RedisClient, RedisServer } from "../tests/support/redis_server.ts";
import { pendingEntries } from "../tests/support/streams.ts";
import type { SupervisedService } from "../tests/support/supervisor.ts";
import { sleep } from "../tests/support/wait.ts";
import type { Rng } from "./rng.ts";
import { compareIds } from "./tally.ts";

/** The kinds of fault, in the order of the module documentation. */
export const FAULT_KINDS = [
  "kill-instance",
  "kill-redis",
  "pause-redis",
  "pause-instance",
] as const;
/** One kind of fault. */
export type FaultKind = typeof FAULT_KINDS[number];

/** What a fault acts on, and the service's settings its durations derive from. */
export interface FaultTargets {
  redis: RedisServer;
  /** A client for measurements (its commands are cut off by a deadline when Redis hangs). */
  monitor: RedisClient;
  instances: readonly SupervisedService[];
  stream: string;
  group: string;
  /** The route target. */
  out: string;
  claimIdleMs: number;
  connectionTimeoutMs: number;
  /** Ids allowed to stay pending when judging "caught up" (entries being retried on purpose). */
  retriedIds: ReadonlySet<string>;
}

/** One injected fault and the service's recovery from it. Times are null when not seen. */
export interface FaultRecord {
  kind: FaultKind;
  /** "redis", or the consumer name of the instance. */
  target: string;
  /** Start, in ms since the soak's producer started. */
  atMs: number;
  /** How long the fault lasted (from its start to the restart or SIGCONT). */
  heldMs: number;
  /** For Redis faults: from the start until an instance's readiness answered non-200. */
  noticedMs: number | null;
  /** From the end until every instance answered `GET /health/ready` with 200. */
  readyMs: number | null;
  /** From the end until the route target grew. */
  resumedMs: number | null;
  /**
   * From the end until the group had read everything produced before the end and nothing of it
   * was pending (entries being retried on purpose aside).
   */
  caughtUpMs: number | null;
}

/** The end of a fault: what {@linkcode inject} reports. */
export interface Injected {
  target: string;
  startedAt: number;
  endedAt: number;
  noticedMs: number | null;
}

/** Injects one fault of `kind` (see the module documentation) and resolves once it ended. */
export async function inject(kind: FaultKind, t: FaultTargets, rng: Rng): Promise<Injected> {
  const startedAt = Date.now();
  switch (kind) {
    case "kill-instance": {
      const inst = rng.pick(t.instances);
      const target = inst.env.CONSUMER_NAME;
      await inst.kill();
      return { target, startedAt, endedAt: Date.now(), noticedMs: null };
    }
    case "kill-redis": {
      const downMs = rng.int(500, 3_000);
      const watch = watchNotReady(t.instances, startedAt);
      try {
        await t.redis.kill();
        await sleep(downMs);
      } finally {
        watch.stop();
      }
      await t.redis.restart();
      return { target: "redis", startedAt, endedAt: Date.now(), noticedMs: await watch.noticed };
    }
    case "pause-redis": {
      const watch = watchNotReady(t.instances, startedAt);
      await t.redis.pause();
      try {
        await sleep(t.connectionTimeoutMs + 3_000);
      } finally {
        watch.stop();
        await t.redis.resume();
      }
      return { target: "redis", startedAt, endedAt: Date.now(), noticedMs: await watch.noticed };
    }
    case "pause-instance": {
      const inst = rng.pick(t.instances);
      const target = inst.env.CONSUMER_NAME;
      inst.pause();
      try {
        await sleep(t.claimIdleMs + rng.int(1_000, 3_000));
      } finally {
        inst.resume();
      }
      return { target, startedAt, endedAt: Date.now(), noticedMs: null };
    }
  }
}

/**
 * Polls the instances' readiness every 250 ms from `since` until `stop()`; `noticed` resolves to
 * the ms from `since` to the first answer other than 200 (a refused or timed-out request counts),
 * or null.
 */
function watchNotReady(
  instances: readonly SupervisedService[],
  since: number,
): { stop(): void; noticed: Promise<number | null> } {
  const done = new AbortController();
  const noticed = (async () => {
    while (!done.signal.aborted) {
      const ready = await Promise.all(instances.map((i) => i.isReady(1_000)));
      if (ready.some((r) => !r)) return Date.now() - since;
      await sleep(250, done.signal);
    }
    return null;
  })();
  return { stop: () => done.abort(), noticed };
}

/**
 * Measures the recovery after a fault that ended at `endedAt` (see {@linkcode FaultRecord}),
 * polling every 200 ms until all three times are known or `timeoutMs` (default 30000) passed.
 */
export async function measureRecovery(
  t: FaultTargets,
  endedAt: number,
  timeoutMs = 30_000,
): Promise<Pick<FaultRecord, "readyMs" | "resumedMs" | "caughtUpMs">> {
  const deadline = endedAt + timeoutMs;
  let readyMs: number | null = null;
  let resumedMs: number | null = null;
  let caughtUpMs: number | null = null;
  let mark: string | undefined;
  let outAtEnd: number | undefined;
  while (Date.now() < deadline && (readyMs === null || resumedMs === null || caughtUpMs === null)) {
    const now = Date.now();
    if (readyMs === null) {
      const ready = await Promise.all(t.instances.map((i) => i.isReady(1_000)));
      if (ready.every(Boolean)) readyMs = now - endedAt;
    }
    try {
      mark ??= await within(lastGeneratedId(t.monitor, t.stream), 2_000);
      outAtEnd ??= await within(xlen(t.monitor, t.out), 2_000);
      if (resumedMs === null && await within(xlen(t.monitor, t.out), 2_000) > outAtEnd) {
        resumedMs = now - endedAt;
      }
      if (caughtUpMs === null && await within(caughtUp(t, mark), 2_000)) {
        caughtUpMs = now - endedAt;
        // Nothing was left to forward: the target need not grow for consumption to be on.
        if (resumedMs === null) resumedMs = caughtUpMs;
      }
    } catch {
      // Redis not answering yet: try again.
    }
    await sleep(200);
  }
  return { readyMs, resumedMs, caughtUpMs };
}

/**
 * True when the group has read up to `mark` and, up to `mark`, only entries of `retriedIds` are
 * pending (at most the first 100 pending entries are looked at).
 */
async function caughtUp(t: FaultTargets, mark: string): Promise<boolean> {
  const info = await t.monitor.sendCommand(["XINFO", "GROUPS", t.stream]) as unknown[][];
  const group = info.map(pairsOf).find((g) => g.name === t.group);
  if (group === undefined || compareIds(String(group["last-delivered-id"]), mark) < 0) return false;
  const pending = await pendingEntries(t.monitor, t.stream, t.group, 100);
  return pending.every((p) => compareIds(p.id, mark) > 0 || t.retriedIds.has(p.id));
}

function pairsOf(flat: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}

async function lastGeneratedId(client: RedisClient, stream: string): Promise<string> {
  const info = pairsOf(await client.sendCommand(["XINFO", "STREAM", stream]) as unknown[]);
  return String(info["last-generated-id"]);
}

async function xlen(client: RedisClient, stream: string): Promise<number> {
  return Number(await client.sendCommand(["XLEN", stream]));
}

/** `promise`, or a rejection after `ms` (the promise itself is left to settle later). */
export function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  promise.catch(() => {});
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`No answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
