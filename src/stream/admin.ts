/**
 * StreamAdmin: what the admin API reads and changes in Redis: per-stream
 * figures (length, groups, consumers, pending, lag, dead-letter length) and
 * replaying dead-letter entries into their stream (one atomic script: each
 * entry is re-added without its dead-letter fields and deleted from the DLQ).
 * With partitioned streams (STREAM_PARTITIONS above 1) a stream S stands for its
 * partition keys {S:0} … {S:N-1}: the reports and the replay cover all of them, and
 * `partitions(S)` reads who owns each (its lease) with its pending and lag.
 */
import { managedCommander } from "../redis/commander.ts";
import type { RedisLink } from "../redis/connection.ts";
import { fetchConsumers, fetchGroups, groupLag } from "./group_ops.ts";
import { DEAD_LETTER_FIELDS, partitionKeys } from "./keys.ts";
import { readLease } from "./partitions/leases.ts";
import { LuaScript } from "./scripts.ts";

/**
 * KEYS: dlq, stream. ARGV: count, source stream name, dead-letter field names…
 * Moves up to count entries whose sourceStream is the stream (or is absent).
 * Returns {moved ids in the stream…}.
 */
const REPLAY = new LuaScript(`
local dlq, stream, count, source = KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[2]
local drop = {}
for i = 3, #ARGV do drop[ARGV[i]] = true end
local moved = {}
local cursor = '-'
while #moved < count do
  local batch = redis.call('XRANGE', dlq, cursor, '+', 'COUNT', 100)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    if #moved >= count then break end
    local f = e[2]
    local src = nil
    local out = {}
    for j = 1, #f, 2 do
      if f[j] == 'sourceStream' then src = f[j + 1] end
      if not drop[f[j]] then
        out[#out + 1] = f[j]
        out[#out + 1] = f[j + 1]
      end
    end
    if (src == nil or src == source) and #out > 0 then
      moved[#moved + 1] = redis.call('XADD', stream, '*', unpack(out))
      redis.call('XDEL', dlq, e[1])
    end
  end
  cursor = '(' .. batch[#batch][1]
end
return moved
`);

/** Figures of one stream. */
export interface StreamReport {
  stream: string;
  length: number;
  groups: {
    name: string;
    consumers: { name: string; pending: number; idleMs: number }[];
    pending: number;
    lag: number | null;
    lastDeliveredId: string;
  }[];
  deadLetter: { stream: string; length: number };
}

/** One partition of a partitioned stream, for `GET /admin/partitions`. */
export interface PartitionReport {
  /** The partition key, `{S:i}`. */
  key: string;
  partition: number;
  /** CONSUMER_NAME of the lease holder; null when no instance holds it. */
  owner: string | null;
  /** When the lease expires (ISO 8601, Redis' clock); null when free. */
  leaseExpiresAt: string | null;
  /** Entries delivered to the group and not acknowledged (0 without a group). */
  pending: number;
  /** Entries not yet delivered to the group (null without a group). */
  lag: number | null;
}

/** Options of `StreamAdmin`. */
export interface StreamAdminOptions {
  connection: RedisLink;
  /** The dead-letter stream of a stream. */
  dlqFor: (stream: string) => string;
  /** STREAM_PARTITIONS (default 1: streams are not partitioned). */
  partitions?: number;
  /** The lease key of a partition key (needed with partitions). */
  leaseFor?: (partitionKey: string) => string;
  /** CONSUMER_GROUP: the group whose pending and lag `partitions()` reports. */
  group?: string;
}

/** Reads and repairs streams for the admin API. */
export class StreamAdmin {
  readonly #opts: StreamAdminOptions;

  constructor(options: StreamAdminOptions) {
    this.#opts = options;
  }

  /** STREAM_PARTITIONS (1 when streams are not partitioned). */
  get partitionCount(): number {
    return this.#opts.partitions ?? 1;
  }

  /** The keys a consumed stream stands for: itself, or its partition keys. */
  keysOf(stream: string): string[] {
    const n = this.partitionCount;
    return n > 1 ? partitionKeys(stream, n) : [stream];
  }

  /** Per partition of `stream`: its lease owner and expiry, pending and lag. */
  async partitions(stream: string): Promise<PartitionReport[]> {
    const o = this.#opts;
    const conn = o.connection;
    const cmd = managedCommander(conn);
    return await Promise.all(
      this.keysOf(stream).map(async (key, partition) => {
        const lease = await readLease(cmd, o.leaseFor ? o.leaseFor(key) : key);
        const figures = await conn.exec(async (c) => {
          const [length, groups] = await Promise.all([
            c.sendCommand(["XLEN", key]) as Promise<number>,
            fetchGroups(c, key),
          ]);
          const g = groups.find((x) => x.name === o.group);
          if (!g) return { pending: 0, lag: null };
          return { pending: g.pending, lag: await groupLag(c, key, g, Number(length)) };
        });
        return {
          key,
          partition,
          owner: lease.owner ?? null,
          leaseExpiresAt: lease.expiresAt === undefined
            ? null
            : new Date(lease.expiresAt).toISOString(),
          ...figures,
        };
      }),
    );
  }

  /** Figures of `stream` (a stream that does not exist reads as empty). */
  async report(stream: string): Promise<StreamReport> {
    const dlq = this.#opts.dlqFor(stream);
    return await this.#opts.connection.exec(async (c) => {
      const [length, dlqLength, found] = await Promise.all([
        c.sendCommand(["XLEN", stream]) as Promise<number>,
        c.sendCommand(["XLEN", dlq]) as Promise<number>,
        fetchGroups(c, stream),
      ]);
      const groups = await Promise.all(found.map(async (g) => {
        const [consumers, lag] = await Promise.all([
          fetchConsumers(c, stream, g.name),
          groupLag(c, stream, g, Number(length)),
        ]);
        return {
          name: g.name,
          consumers,
          pending: g.pending,
          lag,
          lastDeliveredId: g.lastDeliveredId,
        };
      }));
      return {
        stream,
        length: Number(length),
        groups,
        deadLetter: { stream: dlq, length: Number(dlqLength) },
      };
    });
  }

  /**
   * Moves up to `count` dead-letter entries of `stream` back into it; returns their new ids.
   * A partitioned stream: each partition's dead letters back into that partition, in
   * partition order, `count` in all.
   */
  async replay(stream: string, count: number): Promise<string[]> {
    const moved: string[] = [];
    for (const key of this.keysOf(stream)) {
      if (moved.length >= count) break;
      const dlq = this.#opts.dlqFor(key);
      const ids = await this.#opts.connection.exec((c) =>
        REPLAY.run(c, [dlq, key], [String(count - moved.length), key, ...DEAD_LETTER_FIELDS])
      ) as string[];
      moved.push(...ids);
    }
    return moved;
  }
}
