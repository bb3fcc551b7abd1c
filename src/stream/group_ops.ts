/**
 * Operations on a stream's consumer groups: create a group, read the groups
 * and their consumers (the one XINFO GROUPS / XINFO CONSUMERS parser, and the
 * one lag rule, used by the consumer's housekeeping and by the admin API),
 * read a group's figures (pending, lag, lengths), remove idle consumers that
 * hold nothing, trim by age. Each is one round trip or one script; the loops,
 * logging and state stay with their callers.
 */
import type { RedisLink, RedisSender } from "../redis/connection.ts";
import { pairsToRecord } from "../redis/reply.ts";
import { DELETE_IDLE_CONSUMER } from "./scripts.ts";

/** Most entries counted when Redis reports no lag (see `groupLag`). */
export const LAG_COUNT_LIMIT = 10_000;

/** One consumer group as XINFO GROUPS reports it. */
export interface GroupInfo {
  name: string;
  /** Consumers the group knows. */
  consumers: number;
  /** Entries delivered and not acknowledged yet. */
  pending: number;
  lastDeliveredId: string;
  /** Redis' own lag; null when it cannot tell (after deletions inside the stream). */
  reportedLag: number | null;
}

/** One consumer as XINFO CONSUMERS reports it. */
export interface ConsumerInfo {
  name: string;
  pending: number;
  idleMs: number;
}

/** Parses an XINFO GROUPS reply. */
export function parseGroups(reply: readonly unknown[]): GroupInfo[] {
  return reply.map((raw) => {
    const g = pairsToRecord(raw as readonly unknown[]);
    return {
      name: String(g.name),
      consumers: Number(g.consumers ?? 0),
      pending: Number(g.pending ?? 0),
      lastDeliveredId: String(g["last-delivered-id"]),
      reportedLag: g.lag === null || g.lag === undefined ? null : Number(g.lag),
    };
  });
}

/** Parses an XINFO CONSUMERS reply. */
export function parseConsumers(reply: readonly unknown[]): ConsumerInfo[] {
  return reply.map((raw) => {
    const c = pairsToRecord(raw as readonly unknown[]);
    return { name: String(c.name), pending: Number(c.pending), idleMs: Number(c.idle) };
  });
}

/**
 * The groups of `stream` (XINFO GROUPS); [] when the stream does not exist.
 * Any other error (WRONGTYPE, NOPERM, …) rejects.
 */
export async function fetchGroups(c: RedisSender, stream: string): Promise<GroupInfo[]> {
  try {
    return parseGroups(await c.sendCommand(["XINFO", "GROUPS", stream]) as unknown[]);
  } catch (err) {
    if (err instanceof Error && err.message.includes("no such key")) return [];
    throw err;
  }
}

/** The consumers of `group` on `stream` (XINFO CONSUMERS). */
export async function fetchConsumers(
  c: RedisSender,
  stream: string,
  group: string,
): Promise<ConsumerInfo[]> {
  return parseConsumers(await c.sendCommand(["XINFO", "CONSUMERS", stream, group]) as unknown[]);
}

/**
 * The lag rule: entries of `stream` (of `length` entries) not yet delivered to
 * group `g`. Redis' own figure when it gives one; when it answers nil (after
 * deletions inside the stream), the entries after the group's last-delivered
 * id, counted up to `LAG_COUNT_LIMIT`. A lag above 0 is checked: when no
 * entry follows the last-delivered id, it is 0 (Redis 7.0 reports a stale lag
 * after trimming, e.g. by producers that XTRIM MAXLEN on every publish). The
 * lag is never above the stream's length.
 */
export async function groupLag(
  c: RedisSender,
  stream: string,
  g: GroupInfo,
  length: number,
): Promise<number> {
  const after = (count: number) =>
    c.sendCommand([
      "XRANGE",
      stream,
      `(${g.lastDeliveredId}`,
      "+",
      "COUNT",
      String(count),
    ]) as Promise<unknown[]>;
  let lag = g.reportedLag;
  if (lag === null) lag = (await after(LAG_COUNT_LIMIT)).length;
  else if (lag > 0 && (await after(1)).length === 0) lag = 0;
  return Math.max(0, Math.min(lag, length));
}

/**
 * Creates `group` on `stream` at `startId` (MKSTREAM). Returns true when it
 * was created, false when it existed already.
 */
export async function ensureGroup(
  conn: RedisLink,
  stream: string,
  group: string,
  startId: string,
): Promise<boolean> {
  try {
    await conn.exec((c) => c.sendCommand(["XGROUP", "CREATE", stream, group, startId, "MKSTREAM"]));
    return true;
  } catch (err) {
    if (err instanceof Error && err.message.startsWith("BUSYGROUP")) return false;
    throw err;
  }
}

/** What `readGroupFigures` reads. */
export interface GroupFigures {
  /** False when the stream or the group is missing. */
  exists: boolean;
  pending: number;
  /** Entries not yet delivered to the group (counted, bounded, when Redis reports nil). */
  lag: number | null;
  consumers: number;
  lastDeliveredId: string | null;
  length: number;
  dlqLength: number;
}

/** Reads the group's figures and the lengths of the stream and its dead-letter stream. */
export async function readGroupFigures(
  conn: RedisLink,
  stream: string,
  group: string,
  dlqStream: string,
): Promise<GroupFigures> {
  const [groups, length, dlqLength] = await conn.exec((c) =>
    Promise.all([
      fetchGroups(c, stream),
      c.sendCommand(["XLEN", stream]) as Promise<number>,
      c.sendCommand(["XLEN", dlqStream]) as Promise<number>,
    ])
  );
  const g = groups.find((x) => x.name === group);
  const lag = !g ? null : await conn.exec((c) => groupLag(c, stream, g, Number(length)));
  return {
    exists: g !== undefined,
    pending: g?.pending ?? 0,
    lag,
    consumers: g?.consumers ?? 0,
    lastDeliveredId: g?.lastDeliveredId ?? null,
    length: Number(length),
    dlqLength: Number(dlqLength),
  };
}

/**
 * Removes the consumers of `group` other than `self` idle over `idleLimitMs`
 * with nothing pending (checked again atomically by a script: DELCONSUMER
 * would drop pending entries). Returns the removed ones.
 */
export async function removeIdleConsumers(
  conn: RedisLink,
  stream: string,
  group: string,
  self: string,
  idleLimitMs: number,
): Promise<{ name: string; idleMs: number }[]> {
  const consumers = await conn.exec((c) => fetchConsumers(c, stream, group));
  const removed: { name: string; idleMs: number }[] = [];
  for (const { name, pending, idleMs } of consumers) {
    if (name === self || pending !== 0 || !(idleMs > idleLimitMs)) continue;
    const done = await conn.exec((cl) => DELETE_IDLE_CONSUMER.run(cl, [stream], [group, name]));
    if (Number(done) === 1) removed.push({ name, idleMs });
  }
  return removed;
}

/** Trims entries older than `retentionMs` (XTRIM MINID, approximate); returns how many went. */
export async function trimOlderThan(
  conn: RedisLink,
  stream: string,
  retentionMs: number,
  now = Date.now(),
): Promise<number> {
  const minId = `${Math.max(0, now - retentionMs)}-0`;
  return Number(await conn.exec((c) => c.sendCommand(["XTRIM", stream, "MINID", "~", minId])));
}
