/**
 * The settle script and its argument encoding, pure: a batch of settle ops of
 * one stream becomes one script call's KEYS and ARGV, and its reply becomes
 * one result per op.
 *
 * The script checks before it writes, because Redis does not roll back a
 * script's earlier writes when a later call fails: for each op it first checks
 * everything that could make one of its writes fail (the entry still pending
 * for this consumer, the key types of its targets, dead-letter stream and
 * idempotency mark, the field count under Lua's stack limit), then writes
 * only the ops that pass: XACK, the copies, the mark. Copies are made inside
 * the script from `XRANGE id id`, so they are byte-exact (field names and
 * values as Redis holds them, in order, duplicates kept) and nothing of the
 * entry travels from the process. The checkpoint moves last, to the highest
 * id acknowledged.
 */
import { MAX_ENTRY_FIELDS } from "../entry.ts";
import { LEASE_CHECK } from "../partitions/leases.ts";
import { ID_COMPARE, LuaScript } from "../scripts.ts";

/** A copy the settle writes with the acknowledgement. */
export type SettleCopy =
  /** The entry, with its `headers` field replaced by `headers`, to every target. */
  | { kind: "forward"; targets: readonly string[]; headers: string }
  /**
   * The entry's leading fields (at most `MAX_ENTRY_FIELDS`), then `fields`
   * (the dead-letter fields, flat), to the dead-letter stream.
   */
  | { kind: "dead_letter"; target: string; fields: readonly string[] };

/** An entry a handler emitted: its fields, XADDed to each target. */
export interface EmitWrite {
  targets: readonly string[];
  fields: readonly string[];
}

/** One entry to settle. */
export interface SettleOpInput {
  /** Entry id. */
  id: string;
  /** The idempotency mark to write (SET with the dedup TTL), if any. */
  dedupKey?: string;
  /** The copy to write, if any. */
  copy?: SettleCopy;
  /** Entries the handler emitted (`ctx.publish`), written only with the acknowledgement. */
  emits?: readonly EmitWrite[];
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
  /**
   * Partitioned streams: the partition's lease key. The batch is fenced: it is written only
   * while the lease names `consumer` (run it with `SETTLE_FENCED`).
   */
  leaseKey?: string;
}

/** A script call, and the ops in the order of its reply. */
export interface EncodedSettle<T extends SettleOpInput> {
  keys: string[];
  args: string[];
  order: T[];
}

/** Why an op was not written (it stays pending); the label of `stream_settle_failures_total`. */
export type SettleFailure =
  | "target_type"
  | "dead_letter_type"
  | "dedup_key_type"
  | "emit_target_type"
  | "too_many_fields";

/** What the settle did with one op. */
export type SettleResult =
  /** Acknowledged, with its copies and mark. */
  | "settled"
  /** Not pending for this consumer (acknowledged elsewhere, or claimed by another): nothing written. */
  | "not_ours"
  /** Partitioned streams: the partition's lease no longer names this consumer; nothing written. */
  | "fenced"
  /** Acknowledged, but Redis no longer had the entry, so no forwarded copy could be made. */
  | "gone"
  /** Nothing written: a write would have failed. */
  | { failed: SettleFailure };

/** The decoded reply. */
export interface SettleReply {
  /** One per op of `order`. */
  results: SettleResult[];
  /** False when the checkpoint key has another type: the checkpoint was not written. */
  checkpointWritten: boolean;
}

const KIND_CODE = { forward: "f", dead_letter: "d" } as const;

/**
 * Encodes `ops`. Bare acknowledgements (no copy, no mark: the common case)
 * travel first, as one comma-joined argument: one string to encode, not N.
 * The other ops follow, each as: id, kind (`f` forward, `d` dead letter, `m`
 * mark only), dedup key index (0 for none), target count, target key
 * indexes, extra count, extras (forward: the new headers; dead letter: the
 * dead-letter fields), then the count of emitted writes and per write: target
 * key index, field count, fields. Keys are passed by index into KEYS, each once.
 */
export function encodeSettle<T extends SettleOpInput>(
  batch: SettleBatch,
  ops: readonly T[],
): EncodedSettle<T> {
  const keys = [batch.stream, batch.checkpointKey];
  if (batch.leaseKey) keys.push(batch.leaseKey); // KEYS[3] of SETTLE_FENCED
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
  const args = [
    batch.group,
    batch.consumer,
    batch.now,
    String(batch.dedupTtlS),
    String(MAX_ENTRY_FIELDS),
  ];
  const plain: T[] = [];
  const rich: T[] = [];
  for (const op of ops) (op.dedupKey || op.copy || op.emits?.length ? rich : plain).push(op);
  args.push(plain.map((op) => op.id).join(","));
  for (const op of rich) {
    const copy = op.copy;
    args.push(op.id, copy ? KIND_CODE[copy.kind] : "m", op.dedupKey ? indexOf(op.dedupKey) : "0");
    if (!copy) args.push("0", "0");
    else if (copy.kind === "forward") {
      args.push(String(copy.targets.length));
      for (const t of copy.targets) args.push(indexOf(t));
      args.push("1", copy.headers);
    } else {
      args.push("1", indexOf(copy.target), String(copy.fields.length), ...copy.fields);
    }
    const writes: string[] = [];
    let count = 0;
    for (const emit of op.emits ?? []) {
      for (const t of emit.targets) {
        writes.push(indexOf(t), String(emit.fields.length), ...emit.fields);
        count++;
      }
    }
    args.push(String(count), ...writes);
  }
  return { keys, args, order: rich.length > 0 ? plain.concat(rich) : plain };
}

const FAILURES: ReadonlySet<string> = new Set<SettleFailure>([
  "target_type",
  "dead_letter_type",
  "dedup_key_type",
  "emit_target_type",
  "too_many_fields",
]);

/** Decodes the reply to a call of `count` ops. */
export function decodeSettle(reply: unknown, count: number): SettleReply {
  if (reply === FENCED) return { results: new Array(count).fill(FENCED), checkpointWritten: true };
  if (!Array.isArray(reply) || reply.length !== count + 1) {
    throw new TypeError(`Settle script answered ${describe(reply)} for ${count} entries`);
  }
  const results = reply.slice(0, count).map((r): SettleResult => {
    if (typeof r === "string" && FAILURES.has(r)) return { failed: r as SettleFailure };
    switch (Number(r)) {
      case 1:
        return "settled";
      case 0:
        return "not_ours";
      case 2:
        return "gone";
    }
    throw new TypeError(`Settle script answered ${JSON.stringify(r)} for an entry`);
  });
  return { results, checkpointWritten: Number(reply[count]) === 1 };
}

/** The whole reply of `SETTLE_FENCED` when the lease is not held. */
const FENCED = "fenced";

function describe(reply: unknown): string {
  return Array.isArray(reply) ? `${reply.length} results` : typeof reply;
}

/**
 * Settles a batch of entries of one stream (see the module comment).
 * KEYS: stream, checkpoint hash, then every other key ops refer to (by index).
 * ARGV: group, consumer, now (ISO), dedup TTL s, field limit, plain ids joined by commas (bare acknowledgements; may be empty), then per other
 *   op: id, kind, dedupKeyIndex (0 for none), targetCount, targetKeyIndex…,
 *   extraCount, extra…, writeCount, then per write: keyIndex, fieldCount, field…
 * Returns per plain id the XACK reply; per other op 1 settled, 0 not pending
 * for this consumer, 2 acknowledged without a copy (the entry is gone), or a
 * failure reason (nothing written); then 1 when the checkpoint could be
 * written (or there was nothing to write), else 0.
 */
export const SETTLE = new LuaScript(`#!lua
${ID_COMPARE}
local stream, ckey = KEYS[1], KEYS[2]
local group, consumer, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local maxFields = tonumber(ARGV[5])
local types = {}
local function ktype(k)
  local t = types[k]
  if not t then
    t = redis.call('TYPE', k)['ok']
    types[k] = t
  end
  return t
end
local results = {}
local best = nil
local function track(id)
  if best == nil or newer(id, best) then best = id end
end
for id in string.gmatch(ARGV[6], '[^,]+') do
  local acked = redis.call('XACK', stream, group, id)
  if acked == 1 then track(id) end
  results[#results + 1] = acked
end
local i = 7
while i <= #ARGV do
  local id, kind, dedup, nt = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local tstart = i + 4
  local ne = tonumber(ARGV[tstart + nt])
  local estart = tstart + nt + 1
  local nw = tonumber(ARGV[estart + ne])
  local wstart = estart + ne + 1
  i = wstart
  for _ = 1, nw do i = i + 2 + tonumber(ARGV[i + 1]) end
  local result = nil
  local copy = nil
  -- 1. Checks: nothing is written for an op that fails one.
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  if #p == 0 or p[1][2] ~= consumer then result = 0 end
  if not result and dedup > 0 then
    local t = ktype(KEYS[dedup])
    if t ~= 'none' and t ~= 'string' then result = 'dedup_key_type' end
  end
  if not result then
    for t = 0, nt - 1 do
      local ty = ktype(KEYS[tonumber(ARGV[tstart + t])])
      if ty ~= 'none' and ty ~= 'stream' then
        if kind == 'd' then result = 'dead_letter_type' else result = 'target_type' end
        break
      end
    end
  end
  if not result then
    local w = wstart
    for _ = 1, nw do
      local ty = ktype(KEYS[tonumber(ARGV[w])])
      if ty ~= 'none' and ty ~= 'stream' then
        result = 'emit_target_type'
        break
      end
      w = w + 2 + tonumber(ARGV[w + 1])
    end
  end
  if not result and nt > 0 then
    local e = redis.call('XRANGE', stream, id, id)
    local f = nil
    if #e == 1 then f = e[1][2] end
    if kind == 'f' then
      if f == nil then
        copy = false
      elseif #f > 2 * maxFields then
        result = 'too_many_fields'
      else
        copy = {}
        local h = nil
        for j = 1, #f do
          copy[j] = f[j]
          if j % 2 == 1 and f[j] == 'headers' then h = j end
        end
        if h then
          copy[h + 1] = ARGV[estart]
        else
          copy[#copy + 1] = 'headers'
          copy[#copy + 1] = ARGV[estart]
        end
      end
    else
      -- A dead-letter copy keeps as many leading fields as fit the field limit.
      copy = {}
      if f then
        for j = 1, math.min(#f, 2 * maxFields) do copy[j] = f[j] end
      end
      for j = 0, ne - 1 do copy[#copy + 1] = ARGV[estart + j] end
    end
  end
  -- 2. Writes, only for an op that passed every check.
  if not result then
    redis.call('XACK', stream, group, id)
    if copy then
      for t = 0, nt - 1 do
        redis.call('XADD', KEYS[tonumber(ARGV[tstart + t])], '*', unpack(copy))
      end
    end
    local w = wstart
    for _ = 1, nw do
      local nf = tonumber(ARGV[w + 1])
      redis.call('XADD', KEYS[tonumber(ARGV[w])], '*', unpack(ARGV, w + 2, w + 1 + nf))
      w = w + 2 + nf
    end
    if dedup > 0 then redis.call('SET', KEYS[dedup], id, 'EX', ttl) end
    track(id)
    if copy == false then result = 2 else result = 1 end
  end
  results[#results + 1] = result
end
local cp = 1
if best then
  local t = ktype(ckey)
  if t == 'none' or t == 'hash' then
    local cur = redis.call('HGET', ckey, consumer)
    if (not cur) or newer(best, cur) then
      redis.call('HSET', ckey, consumer, best, consumer .. ':at', now)
    else
      redis.call('HSET', ckey, consumer .. ':at', now)
    end
  else
    cp = 0
  end
end
results[#results + 1] = cp
return results
`);

/**
 * `SETTLE` fenced by the partition's lease (partitioned streams, see `LEASE_CHECK`): KEYS[3]
 * is the lease key (`SettleBatch.leaseKey`), ARGV[2] the consumer, the lease's owner. One check
 * for the whole batch, before any write (a batch is one stream, so one partition): when the
 * lease does not name this consumer, nothing is written and the reply is \`fenced\`: the
 * entries stay pending for the partition's new owner.
 */
export const SETTLE_FENCED = new LuaScript(SETTLE.source.replace(
  "#!lua\n",
  `#!lua
${LEASE_CHECK}
if not lease_held(KEYS[3], ARGV[2]) then return 'fenced' end
`,
));
