/**
 * Load generation and observation for the benchmark, on a real Redis: preloading a stream with
 * entries in the service's wire format, reading a consumer group's progress (XINFO GROUPS),
 * waiting for a drain, and the paced producer + forwarded-entry reader of the latency run.
 *
 * @module
 */

import type { RedisClient } from "../tests/support/redis_server.ts";
import {
  type Fields,
  groupInfo,
  preload as preloadEntries,
  xadd,
} from "../tests/support/streams.ts";

/**
 * The fields of entry `seq` (wire format, README: Stream entries); `aggregates` distinct ids.
 * The payload is padded to `payloadBytes` (at least its natural size; the outside harness of
 * the performance issue uses 200).
 */
export function entryFields(
  seq: number,
  aggregates: number,
  sentAt?: number,
  payloadBytes = 0,
): Fields {
  const head = sentAt === undefined
    ? `{"seq":${seq},"amount":${seq % 997},"note":"bench entry`
    : `{"seq":${seq},"sentAt":${sentAt},"amount":${seq % 997},"note":"bench entry`;
  const pad = Math.max(0, payloadBytes - head.length - 2);
  return {
    event: "bench.tick",
    aggregateId: `agg-${seq % aggregates}`,
    timestamp: new Date().toISOString(),
    payload: `${head}${".".repeat(pad)}"}`,
    serviceName: "bench",
    headers: `{"correlationId":"bench-${seq}"}`,
  };
}

/** XADDs `count` entries to `stream`, pipelined in chunks of 2000. */
export async function preload(
  client: RedisClient,
  stream: string,
  count: number,
  aggregates: number,
  payloadBytes = 0,
): Promise<void> {
  await preloadEntries(
    client,
    stream,
    count,
    (i) => entryFields(i, aggregates, undefined, payloadBytes),
    2_000,
  );
}

/** What XINFO GROUPS says of one group. */
export interface GroupState {
  exists: boolean;
  pending: number;
  lag: number | null;
  entriesRead: number;
}

/** The state of `group` on `stream` (exists: false while the stream or group is missing). */
export async function groupState(
  client: RedisClient,
  stream: string,
  group: string,
): Promise<GroupState> {
  const g = await groupInfo(client, stream, group);
  if (!g) return { exists: false, pending: 0, lag: null, entriesRead: 0 };
  return { exists: true, pending: g.pending, lag: g.lag, entriesRead: g.entriesRead ?? 0 };
}

/** Outcome of {@linkcode measureDrain}. */
export interface DrainResult {
  /** Entries acknowledged between the first poll that saw consumption and the end. */
  entries: number;
  /** ms from that first poll to the poll that saw lag 0 and pending 0. */
  durationMs: number;
  /** Entries per second over that window. */
  rate: number;
  /** ms from `spawnedAt` (the consumer's process start) to the end. */
  wallMs: number;
  /** performance.now() of the first poll that saw consumption and of the end. */
  startedAt: number;
  endedAt: number;
}

/**
 * Polls `group` on `stream` every `intervalMs` until lag and pending are 0 for the `total`
 * preloaded entries. The window starts at the first poll that sees the group read anything
 * (consumption started; entries already acknowledged then are not counted), so the consumer's
 * process start-up is left out the same way for every consumer. Gives up when nothing moves for
 * `stallMs` or `isAlive()` turns false.
 */
export async function measureDrain(opts: {
  client: RedisClient;
  stream: string;
  group: string;
  total: number;
  spawnedAt: number;
  intervalMs?: number;
  stallMs?: number;
  isAlive: () => boolean;
  onStart?: () => void;
}): Promise<DrainResult> {
  const { client, stream, group, total, intervalMs = 20, stallMs = 30_000 } = opts;
  let start: { at: number; done: number } | undefined;
  let lastProgress = { at: performance.now(), done: -1 };
  while (true) {
    const before = performance.now();
    const s = await groupState(client, stream, group);
    const at = (before + performance.now()) / 2;
    const done = s.exists ? s.entriesRead - s.pending : 0;
    if (!start && s.exists && s.entriesRead > 0) {
      start = { at, done };
      opts.onStart?.();
    }
    if (start && s.lag === 0 && s.pending === 0 && s.entriesRead >= total) {
      const durationMs = at - start.at;
      const entries = total - start.done;
      return {
        entries,
        durationMs,
        rate: entries / (durationMs / 1000),
        wallMs: at - opts.spawnedAt,
        startedAt: start.at,
        endedAt: at,
      };
    }
    if (done !== lastProgress.done) lastProgress = { at, done };
    else if (at - lastProgress.at > stallMs) {
      throw new Error(
        `Drain stalled: ${done} of ${total} acknowledged, no progress for ${stallMs} ms ` +
          `(lag ${s.lag}, pending ${s.pending})`,
      );
    }
    if (!opts.isAlive()) throw new Error(`Consumer exited during the drain (${done}/${total})`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Outcome of {@linkcode measureLatency}. */
export interface LatencyResult {
  sent: number;
  /** Entries sent after the warm-up whose forwarded copy arrived. */
  measured: number;
  /** Latencies (ms) of the measured entries. */
  latenciesMs: number[];
  /** Entries sent per second, achieved. */
  achievedRate: number;
  /** Forwarded entries missing at the deadline. */
  missing: number;
}

/**
 * XADDs entries to `stream` at `rate` per second for `seconds` (send time kept per sequence
 * number), while a second connection XREADs `outStream` (BLOCK) where the consumer forwards
 * every acknowledged entry; latency = arrival of the forwarded copy − send time. Entries sent
 * during the first `warmupMs` are not measured.
 */
export async function measureLatency(opts: {
  sender: RedisClient;
  reader: RedisClient;
  stream: string;
  outStream: string;
  rate: number;
  seconds: number;
  warmupMs: number;
  aggregates: number;
  graceMs?: number;
}): Promise<LatencyResult> {
  const { sender, reader, stream, outStream, rate, seconds, aggregates } = opts;
  const total = Math.max(1, Math.round(rate * seconds));
  const sentAt = new Float64Array(total).fill(NaN);
  const latency = new Float64Array(total).fill(NaN);
  let received = 0;
  let deadline = Infinity;

  const readLoop = (async () => {
    let lastId = "0-0";
    while (received < total && performance.now() < deadline) {
      const reply = await reader.sendCommand([
        "XREAD",
        "COUNT",
        "1000",
        "BLOCK",
        "200",
        "STREAMS",
        outStream,
        lastId,
      ]) as [string, [string, string[]][]][] | null;
      const now = performance.now();
      if (!reply) continue;
      for (const [id, flat] of reply[0][1]) {
        lastId = id;
        const p = flat.indexOf("payload");
        if (p < 0 || p % 2 !== 0) continue;
        const seq = Number((JSON.parse(flat[p + 1]) as { seq: number }).seq);
        if (seq >= 0 && seq < total && Number.isNaN(latency[seq])) {
          latency[seq] = now - sentAt[seq];
          received++;
        }
      }
    }
  })();

  const started = performance.now();
  const writes: Promise<unknown>[] = [];
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
    while (sent < due) {
      const seq = sent++;
      sentAt[seq] = performance.now();
      writes.push(xadd(sender, stream, entryFields(seq, aggregates, Date.now())));
    }
    if (writes.length > 1_000) await Promise.all(writes.splice(0));
    await new Promise((r) => setTimeout(r, 1));
  }
  const sendSeconds = (performance.now() - started) / 1000;
  await Promise.all(writes);
  deadline = performance.now() + (opts.graceMs ?? 30_000);
  await readLoop;

  const latenciesMs: number[] = [];
  for (let i = 0; i < total; i++) {
    if (sentAt[i] - started >= opts.warmupMs && !Number.isNaN(latency[i])) {
      latenciesMs.push(latency[i]);
    }
  }
  return {
    sent: total,
    measured: latenciesMs.length,
    latenciesMs,
    achievedRate: total / sendSeconds,
    missing: total - received,
  };
}

/** Calls and server-side µs per command since the last CONFIG RESETSTAT (INFO commandstats). */
export async function commandStats(
  client: RedisClient,
): Promise<Map<string, { calls: number; usec: number }>> {
  const info = String(await client.sendCommand(["INFO", "commandstats"]));
  const out = new Map<string, { calls: number; usec: number }>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    out.set(m[1], { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return out;
}

/** "xreadgroup 1,000 calls, …" for the commands a consumer sent (the bench's own left out). */
export function describeCommands(
  stats: Map<string, { calls: number; usec: number }>,
  entries: number,
): { calls: number; usec: number; text: string } {
  const ignore = new Set(["xinfo", "info", "config|resetstat", "flushall", "client|setname"]);
  let calls = 0;
  let usec = 0;
  const parts: string[] = [];
  for (const [name, s] of [...stats.entries()].sort((a, b) => b[1].calls - a[1].calls)) {
    if (ignore.has(name)) continue;
    calls += s.calls;
    usec += s.usec;
    parts.push(`${name} ${s.calls} (${(entries / s.calls).toFixed(1)}/call, ${s.usec} µs)`);
  }
  return { calls, usec, text: parts.join(", ") };
}
