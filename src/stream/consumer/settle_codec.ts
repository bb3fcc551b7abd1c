/**
 * The settle script and its argument encoding, pure: a batch of settle ops of
 * one stream becomes one script call's KEYS and ARGV, and its reply becomes
 * one result per op. The script acknowledges each entry and, only where XACK
 * returned 1, writes its forwarded or dead-letter copies and its idempotency
 * mark, then moves the checkpoint: atomic per batch, so a copy is written
 * exactly once even when two consumers settle the same entry.
 */
import { ID_COMPARE, LuaScript } from "../scripts.ts";

/** One entry to settle. */
export interface SettleOpInput {
  /** Entry id. */
  id: string;
  /** The idempotency mark to write (SET with the dedup TTL), if any. */
  dedupKey?: string;
  /** Streams that receive a copy of `fields` (ROUTES targets, or the dead-letter stream). */
  targets: readonly string[];
  /** Fields of the copy, when there are targets. */
  fields?: Readonly<Record<string, string>>;
}

/** The batch-wide arguments. */
export interface SettleBatch {
  stream: string;
  checkpointKey: string;
  group: string;
  consumer: string;
  /** ISO 8601 time written beside the checkpoint. */
  now: string;
  dedupTtlS: number;
}

/** A script call, and the ops in the order of its reply. */
export interface EncodedSettle<T extends SettleOpInput> {
  keys: string[];
  args: string[];
  order: T[];
}

/**
 * Encodes `ops`. Bare acknowledgements (no copy, no mark: the common case)
 * travel first, as one comma-joined argument: one string to encode, not N.
 * The other ops follow, each as: id, dedup key index (0 for none), target
 * count, target key indexes, field count, fields. Keys are passed by index
 * into KEYS so that each appears once.
 */
export function encodeSettle<T extends SettleOpInput>(
  batch: SettleBatch,
  ops: readonly T[],
): EncodedSettle<T> {
  const keys = [batch.stream, batch.checkpointKey];
  const keyIndex = new Map<string, number>();
  const indexOf = (k: string) => {
    let i = keyIndex.get(k);
    if (i === undefined) {
      keys.push(k);
      i = keys.length; // Lua KEYS are 1-based
      keyIndex.set(k, i);
    }
    return String(i);
  };
  const args = [batch.group, batch.consumer, batch.now, String(batch.dedupTtlS)];
  const plain: T[] = [];
  const rich: T[] = [];
  for (const op of ops) (op.dedupKey || op.targets.length > 0 ? rich : plain).push(op);
  args.push(plain.map((op) => op.id).join(","));
  for (const op of rich) {
    args.push(op.id, op.dedupKey ? indexOf(op.dedupKey) : "0", String(op.targets.length));
    for (const t of op.targets) args.push(indexOf(t));
    const flat = op.fields ? Object.entries(op.fields).flat() : [];
    args.push(String(flat.length), ...flat);
  }
  return { keys, args, order: rich.length > 0 ? plain.concat(rich) : plain };
}

/** Per op of `order`, true when this call acknowledged it (XACK returned 1). */
export function decodeSettle(reply: unknown, count: number): boolean[] {
  if (!Array.isArray(reply) || reply.length !== count) {
    throw new TypeError(`Settle script answered ${describe(reply)} for ${count} entries`);
  }
  return reply.map((r) => Number(r) === 1);
}

function describe(reply: unknown): string {
  return Array.isArray(reply) ? `${reply.length} results` : typeof reply;
}

/**
 * Settles a batch of entries of one stream.
 * KEYS: stream, checkpoint hash, then every other key ops refer to (by index).
 * ARGV: group, consumer, now (ISO), dedup TTL s, plain ids joined by commas (bare
 *   acknowledgements, the common case; may be empty), then per other op:
 *   id, dedupKeyIndex (0 for none), targetCount, targetKeyIndex…, fieldCount, field…
 * Returns the XACK reply per plain id, then per op (1 when this call acknowledged it).
 */
export const SETTLE = new LuaScript(`${ID_COMPARE}
local stream, ckey = KEYS[1], KEYS[2]
local group, consumer, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local results = {}
local best = nil
for id in string.gmatch(ARGV[5], '[^,]+') do
  local acked = redis.call('XACK', stream, group, id)
  if acked == 1 and (best == nil or newer(id, best)) then best = id end
  results[#results + 1] = acked
end
local i = 6
while i <= #ARGV do
  local id = ARGV[i]
  local dedup = tonumber(ARGV[i + 1])
  local nt = tonumber(ARGV[i + 2])
  local tstart = i + 3
  local nf = tonumber(ARGV[tstart + nt])
  local fstart = tstart + nt + 1
  local acked = redis.call('XACK', stream, group, id)
  if acked == 1 then
    if nt > 0 and nf > 0 then
      local fields = {}
      for j = 0, nf - 1 do fields[j + 1] = ARGV[fstart + j] end
      for t = 0, nt - 1 do
        redis.call('XADD', KEYS[tonumber(ARGV[tstart + t])], '*', unpack(fields))
      end
    end
    if dedup > 0 then redis.call('SET', KEYS[dedup], id, 'EX', ttl) end
    if best == nil or newer(id, best) then best = id end
  end
  results[#results + 1] = acked
  i = fstart + nf
end
if best then
  local cur = redis.call('HGET', ckey, consumer)
  if (not cur) or newer(best, cur) then
    redis.call('HSET', ckey, consumer, best, consumer .. ':at', now)
  else
    redis.call('HSET', ckey, consumer .. ':at', now)
  end
end
return results
`);
