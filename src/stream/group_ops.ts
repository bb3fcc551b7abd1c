/**
 * Operations on a stream's consumer group that the consumer's housekeeping
 * loops run: create the group, read its figures (pending, lag, lengths),
 * remove idle consumers that hold nothing, trim by age. Each is one round trip
 * or one script through the connection manager; the loops, logging and state
 * stay in the consumer.
 */
import type { ConnectionManager } from "../redis/connection.ts";
import { DELETE_IDLE_CONSUMER } from "./scripts.ts";

/** Most entries counted when Redis reports no lag (see `readGroupFigures`). */
export const LAG_COUNT_LIMIT = 10_000;

/** Flat RESP2 `[name, value, …]` as an object. */
export function pairs(flat: readonly unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}

/**
 * Creates `group` on `stream` at `startId` (MKSTREAM). Returns true when it
 * was created, false when it existed already.
 */
export async function ensureGroup(
  conn: ConnectionManager,
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
  conn: ConnectionManager,
  stream: string,
  group: string,
  dlqStream: string,
): Promise<GroupFigures> {
  const [groups, length, dlqLength] = await conn.exec((c) =>
    Promise.all([
      c.sendCommand(["XINFO", "GROUPS", stream]).catch((err: unknown) => {
        if (err instanceof Error && err.message.includes("no such key")) return [];
        throw err;
      }),
      c.sendCommand(["XLEN", stream]),
      c.sendCommand(["XLEN", dlqStream]),
    ])
  ) as unknown as [unknown[][], number, number];
  const g = groups.map(pairs).find((x) => x.name === group);
  const lastDeliveredId = g ? String(g["last-delivered-id"]) : null;
  let lag = g?.lag === null || g?.lag === undefined ? null : Number(g.lag);
  if (g && lag === null) {
    // Redis answers nil after deletions inside the stream: count what is left.
    const after = await conn.exec((c) =>
      c.sendCommand([
        "XRANGE",
        stream,
        `(${lastDeliveredId}`,
        "+",
        "COUNT",
        String(LAG_COUNT_LIMIT),
      ])
    ) as unknown[];
    lag = after.length;
  }
  return {
    exists: g !== undefined,
    pending: Number(g?.pending ?? 0),
    lag,
    consumers: Number(g?.consumers ?? 0),
    lastDeliveredId,
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
  conn: ConnectionManager,
  stream: string,
  group: string,
  self: string,
  idleLimitMs: number,
): Promise<{ name: string; idleMs: number }[]> {
  const info = await conn.exec((c) =>
    c.sendCommand(["XINFO", "CONSUMERS", stream, group])
  ) as unknown[][];
  const removed: { name: string; idleMs: number }[] = [];
  for (const raw of info) {
    const c = pairs(raw);
    const name = String(c.name);
    if (name === self || Number(c.pending) !== 0 || !(Number(c.idle) > idleLimitMs)) continue;
    const done = await conn.exec((cl) => DELETE_IDLE_CONSUMER.run(cl, [stream], [group, name]));
    if (Number(done) === 1) removed.push({ name, idleMs: Number(c.idle) });
  }
  return removed;
}

/** Trims entries older than `retentionMs` (XTRIM MINID, approximate); returns how many went. */
export async function trimOlderThan(
  conn: ConnectionManager,
  stream: string,
  retentionMs: number,
  now = Date.now(),
): Promise<number> {
  const minId = `${Math.max(0, now - retentionMs)}-0`;
  return Number(await conn.exec((c) => c.sendCommand(["XTRIM", stream, "MINID", "~", minId])));
}
