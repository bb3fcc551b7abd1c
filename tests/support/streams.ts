/**
 * Redis stream helpers shared by the integration tests, the end-to-end tests and the benchmark:
 * entries in the service's wire format (README: Stream entries), XADD of one entry or of many
 * (pipelined), consumer-group set-up (XGROUP CREATE, a "ghost" reader that never acknowledges),
 * and the Redis-side views that tests assert on: XRANGE, XLEN, XINFO GROUPS, XINFO CONSUMERS,
 * XPENDING and the checkpoint hash. They only talk to Redis, through a client of
 * `redis_server.ts` (or a cluster client routed by key); nothing here knows about the service process.
 *
 * @module
 */

import { pairsToRecord } from "../../src/redis/reply.ts";
import type { RawSender } from "../../src/redis/commander.ts";

/**
 * What these helpers send commands through: a client of `redis_server.ts`, or a cluster client
 * wrapped by `routedSender` of `redis_cluster.ts` (each command routed by its key).
 */
export type StreamClient = RawSender;

/** Fields of one stream entry, by name. */
export type Fields = Record<string, string>;

/** One entry as read back from a stream. */
export interface StreamEntry {
  id: string;
  fields: Fields;
}

/** A Redis reply `[k1, v1, k2, v2, …]` as an object: the service's own `pairsToRecord`. */
export { pairsToRecord as pairs };

/**
 * A well-formed entry in the wire format of README: Stream entries, fields in this order: `event`,
 * `aggregateId` (default `"agg-1"`), `timestamp` (now, ISO 8601 UTC), `payload` (JSON of
 * `payload`, default `{}`), `serviceName` (`"test-producer"`) and `headers` (JSON of a random
 * `correlationId` with `headers` on top, default `{}`).
 */
export function wireEntry(
  event: string,
  aggregateId = "agg-1",
  payload: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Fields {
  return {
    event,
    aggregateId,
    timestamp: new Date().toISOString(),
    payload: JSON.stringify(payload),
    serviceName: "test-producer",
    headers: JSON.stringify({ correlationId: crypto.randomUUID(), ...headers }),
  };
}

/**
 * Entry `i` of a numbered series (the default of {@linkcode preload}): event `"test.event"`,
 * aggregateId `agg-<i mod 100>`, payload `{ n: i }`, correlationId `corr-<i>`.
 */
export function numberedEntry(i: number): Fields {
  return wireEntry("test.event", `agg-${i % 100}`, { n: i }, { correlationId: `corr-${i}` });
}

/** XADD of `fields` to `stream` with id `id` (default `"*"`: Redis picks it); returns the id. */
export async function xadd(
  client: StreamClient,
  stream: string,
  fields: Fields,
  id = "*",
): Promise<string> {
  return String(await client.sendCommand(["XADD", stream, id, ...Object.entries(fields).flat()]));
}

/**
 * Appends `count` entries to `stream`, entry `i` built by `make(i)` (default
 * {@linkcode numberedEntry}), with XADDs pipelined on `client` in chunks of `chunk` (default
 * 1000); returns their ids in order.
 */
export async function preload(
  client: StreamClient,
  stream: string,
  count: number,
  make: (i: number) => Fields = numberedEntry,
  chunk = 1000,
): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < count; start += chunk) {
    const batch: Promise<string>[] = [];
    for (let i = start; i < Math.min(count, start + chunk); i++) {
      batch.push(xadd(client, stream, make(i)));
    }
    ids.push(...await Promise.all(batch));
  }
  return ids;
}

/** XLEN of `stream` (0 when it does not exist). */
export async function xlen(client: StreamClient, stream: string): Promise<number> {
  return Number(await client.sendCommand(["XLEN", stream]));
}

/** Every entry of `stream` (XRANGE in pages of 5000), oldest first; [] when it does not exist. */
export async function readStream(client: StreamClient, stream: string): Promise<StreamEntry[]> {
  const page = 5000;
  const out: StreamEntry[] = [];
  let start = "-";
  while (true) {
    const reply = await client.sendCommand(
      ["XRANGE", stream, start, "+", "COUNT", String(page)],
    ) as [string, string[]][];
    for (const [id, flat] of reply) out.push({ id, fields: pairsToRecord(flat) });
    if (reply.length < page) return out;
    start = `(${reply[reply.length - 1][0]}`;
  }
}

/** XGROUP CREATE `group` on `stream` at `startId` (default 0), with MKSTREAM. */
export async function createGroup(
  client: StreamClient,
  stream: string,
  group: string,
  startId = "0",
): Promise<void> {
  await client.sendCommand(["XGROUP", "CREATE", stream, group, startId, "MKSTREAM"]);
}

/**
 * Reads up to `count` new entries of `stream` in `group` as consumer `name` without
 * acknowledging them (a "ghost" consumer that dies holding them); returns their ids.
 */
export async function readAsGhost(
  client: StreamClient,
  stream: string,
  group: string,
  name: string,
  count: number,
): Promise<string[]> {
  const reply = await client.sendCommand([
    "XREADGROUP",
    "GROUP",
    group,
    name,
    "COUNT",
    String(count),
    "STREAMS",
    stream,
    ">",
  ]) as [string, [string, string[]][]][] | null;
  return (reply?.[0]?.[1] ?? []).map(([id]) => id);
}

/** A consumer group as XINFO GROUPS reports it. */
export interface GroupInfo {
  name: string;
  /** Consumers the group knows. */
  consumers: number;
  /** Entries delivered and not acknowledged yet (the PEL). */
  pending: number;
  lastDeliveredId: string;
  /** Entries the group has read; null when Redis cannot tell. */
  entriesRead: number | null;
  /** Entries not read yet; null when Redis cannot tell (e.g. after deletions). */
  lag: number | null;
}

/**
 * Every consumer group of `stream` (XINFO GROUPS); [] when the stream does not exist. Other
 * errors (Redis down, …) reject.
 */
export async function groups(client: StreamClient, stream: string): Promise<GroupInfo[]> {
  let reply: unknown[][];
  try {
    reply = await client.sendCommand(["XINFO", "GROUPS", stream]) as unknown[][];
  } catch (err) {
    if (err instanceof Error && /no such key/i.test(err.message)) return [];
    throw err;
  }
  const num = (v: unknown) => v === null || v === undefined ? null : Number(v);
  return reply.map((raw) => {
    const g = pairsToRecord(raw);
    return {
      name: String(g.name),
      consumers: Number(g.consumers),
      pending: Number(g.pending),
      lastDeliveredId: String(g["last-delivered-id"]),
      entriesRead: num(g["entries-read"]),
      lag: num(g.lag),
    };
  });
}

/** The `sourceId` of each forwarded copy in `target` (from its `headers`), in stream order. */
export async function forwardedSourceIds(client: StreamClient, target: string): Promise<string[]> {
  return (await readStream(client, target)).map((e) =>
    JSON.parse(e.fields.headers).sourceId as string
  );
}

/** The group `group` of `stream`, or undefined when the stream or the group does not exist. */
export async function groupInfo(
  client: StreamClient,
  stream: string,
  group: string,
): Promise<GroupInfo | undefined> {
  return (await groups(client, stream)).find((g) => g.name === group);
}

/**
 * The group's lag, checked: 0 when no entry follows its last-delivered id, whatever Redis
 * reports. Redis 7.0 can report a stale lag for good after an AOF reload (replayed reads do not
 * restore the group's read counter), as `groupLag` in src/stream/group_ops.ts says too; null
 * when Redis cannot tell and entries follow.
 */
export async function checkedLag(
  client: StreamClient,
  stream: string,
  g: GroupInfo,
): Promise<number | null> {
  if (g.lag === 0) return 0;
  const after = await client.sendCommand([
    "XRANGE",
    stream,
    `(${g.lastDeliveredId}`,
    "+",
    "COUNT",
    "1",
  ]) as unknown[];
  return after.length === 0 ? 0 : g.lag;
}

/** True when the group exists, has nothing pending and nothing left to read (`checkedLag` 0). */
export async function isDrained(
  client: StreamClient,
  stream: string,
  group: string,
): Promise<boolean> {
  const g = await groupInfo(client, stream, group);
  return g !== undefined && g.pending === 0 && await checkedLag(client, stream, g) === 0;
}

/**
 * The XPENDING summary of `group`: entries pending in `total`, and per consumer in
 * `byConsumer`. Rejects when the stream or the group does not exist.
 */
export async function pendingSummary(
  client: StreamClient,
  stream: string,
  group: string,
): Promise<{ total: number; byConsumer: Record<string, number> }> {
  const reply = await client.sendCommand(["XPENDING", stream, group]) as [
    number,
    string | null,
    string | null,
    [string, string][] | null,
  ];
  const byConsumer: Record<string, number> = {};
  for (const [name, n] of reply[3] ?? []) byConsumer[name] = Number(n);
  return { total: Number(reply[0]), byConsumer };
}

/** Number of entries pending in `group` of `stream`; 0 when the stream or group is missing. */
export async function pendingCount(
  client: StreamClient,
  stream: string,
  group: string,
): Promise<number> {
  try {
    return (await pendingSummary(client, stream, group)).total;
  } catch {
    return 0;
  }
}

/** One consumer of a group as XINFO CONSUMERS reports it. */
export interface ConsumerInfo {
  name: string;
  /** Entries it holds (delivered, not acknowledged). */
  pending: number;
  /** Milliseconds since its last attempted interaction. */
  idle: number;
}

/** Consumers of `group` of `stream` (XINFO CONSUMERS). Rejects when either is missing. */
export async function consumers(
  client: StreamClient,
  stream: string,
  group: string,
): Promise<ConsumerInfo[]> {
  const reply = await client.sendCommand(["XINFO", "CONSUMERS", stream, group]) as unknown[][];
  return reply.map((raw) => {
    const c = pairsToRecord(raw.map(String));
    return { name: c.name, pending: Number(c.pending), idle: Number(c.idle) };
  });
}

/** One pending entry of a group (XPENDING extended form). */
export interface PendingEntry {
  id: string;
  /** Consumer that holds it. */
  consumer: string;
  /** Milliseconds since its last delivery. */
  idleMs: number;
  /** Times it was delivered. */
  deliveries: number;
}

/**
 * The first `count` (default 10000) pending entries of `group`, oldest first. Rejects when the
 * stream or the group does not exist.
 */
export async function pendingEntries(
  client: StreamClient,
  stream: string,
  group: string,
  count = 10_000,
): Promise<PendingEntry[]> {
  const reply = await client.sendCommand(
    ["XPENDING", stream, group, "-", "+", String(count)],
  ) as [string, string, number, number][];
  return reply.map(([id, consumer, idleMs, deliveries]) => ({
    id,
    consumer,
    idleMs: Number(idleMs),
    deliveries: Number(deliveries),
  }));
}

/**
 * The checkpoint hash `<stream>:checkpoint:<group>` (README: Delivery guarantees): the last acknowledged id
 * per consumer name, and `<consumer>:at`; {} when missing.
 */
export async function checkpoint(
  client: StreamClient,
  stream: string,
  group: string,
): Promise<Fields> {
  const flat = await client.sendCommand(["HGETALL", `${stream}:checkpoint:${group}`]) as string[];
  return pairsToRecord(flat);
}

/**
 * A figure of Redis' INFO commandstats for `command` (e.g. `xpending`, `xgroup|create`):
 * `calls` (default) or `failed_calls`; 0 while the command was never called. Counts commands
 * called from scripts too, so tests can wait for rounds of a loop.
 */
export async function commandStat(
  client: StreamClient,
  command: string,
  stat: "calls" | "failed_calls" = "calls",
): Promise<number> {
  const info = String(await client.sendCommand(["INFO", "commandstats"]));
  const escaped = command.replace(/[|]/g, "\\|");
  const line = new RegExp(`cmdstat_${escaped}:([^\\r\\n]*)`).exec(info)?.[1] ?? "";
  return Number(new RegExp(`(?:^|,)${stat}=(\\d+)`).exec(line)?.[1] ?? 0);
}
