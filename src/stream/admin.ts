/**
 * StreamAdmin: what the admin API reads and changes in Redis: per-stream
 * figures (length, groups, consumers, pending, lag, dead-letter length) and
 * replaying dead-letter entries into their stream (one atomic script: each
 * entry is re-added without its dead-letter fields and deleted from the DLQ).
 */
import type { ConnectionManager } from "../redis/connection.ts";
import { fetchConsumers, fetchGroups, groupLag } from "./group_ops.ts";
import { DEAD_LETTER_FIELDS } from "./keys.ts";
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

/** Options of `StreamAdmin`. */
export interface StreamAdminOptions {
  connection: ConnectionManager;
  /** The dead-letter stream of a stream. */
  dlqFor: (stream: string) => string;
}

/** Reads and repairs streams for the admin API. */
export class StreamAdmin {
  readonly #opts: StreamAdminOptions;

  constructor(options: StreamAdminOptions) {
    this.#opts = options;
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

  /** Moves up to `count` dead-letter entries of `stream` back into it; returns their new ids. */
  async replay(stream: string, count: number): Promise<string[]> {
    const dlq = this.#opts.dlqFor(stream);
    return await this.#opts.connection.exec((c) =>
      REPLAY.run(c, [dlq, stream], [String(count), stream, ...DEAD_LETTER_FIELDS])
    ) as string[];
  }
}
