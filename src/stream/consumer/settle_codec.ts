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
 * only the ops that pass: XACK, the copies, the mark. Bare acknowledgements
 * (no copy, no mark: the common case) skip the checks and go in bulk: one
 * multi-id XACK per group of ops that count alike, so Redis makes two calls
 * per group instead of one per entry (see `SETTLE`). Copies are made inside
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
  /** The bare acknowledgements, by group: the reply has one count per group, first. */
  groups: T[][];
  /** The other ops: the reply has one result per op, after the group counts. */
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
  /** Acknowledged, but Redis no longer had the entry, so no forwarded copy could be made. */
  | "gone"
  /** Nothing written: a write would have failed. */
  | { failed: SettleFailure }
  /** Partitioned streams: the partition's lease no longer names this consumer; nothing written. */
  | "fenced";

/** The decoded reply. */
export interface SettleReply {
  /**
   * Per group of bare acknowledgements, how many XACK took effect (the others
   * were no longer pending in the group: acknowledged elsewhere).
   */
  acked: number[];
  /** One per op of `order`. */
  results: SettleResult[];
  /** False when the checkpoint key has another type: the checkpoint was not written. */
  checkpointWritten: boolean;
  /** Partitioned streams: the lease was not held, nothing of the batch was written. */
  fenced: boolean;
}

const KIND_CODE = { forward: "f", dead_letter: "d" } as const;

/**
 * Encodes `ops`. Bare acknowledgements (no copy, no mark: the common case)
 * travel first: their number of groups (ops the caller counts alike, as
 * `sameGroup` tells; one group when not given), then per group one
 * comma-joined argument with the group's highest id first (swapped with the
 * first): one string to encode per group, not one per entry. The other ops
 * follow, each as: id,
 * kind (`f` forward, `d` dead letter, `m` mark only), dedup key index (0 for
 * none), target count, target key indexes, extra count, extras (forward: the
 * new headers; dead letter: the dead-letter fields), then the count of
 * emitted writes and per write: target key index, field count, fields. Keys
 * are passed by index into KEYS, each once (with a lease key, that is KEYS[3]).
 */
export function encodeSettle<T extends SettleOpInput>(
  batch: SettleBatch,
  ops: readonly T[],
  sameGroup?: (a: T, b: T) => boolean,
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
  const rich: T[] = [];
  const groups: T[][] = [];
  let last: T[] | undefined;
  for (const op of ops) {
    if (op.dedupKey || op.copy || op.emits?.length) {
      rich.push(op);
      continue;
    }
    // Usually the group of the op before (few groups per batch: a short scan otherwise).
    if (!last || (sameGroup && !sameGroup(last[0], op))) {
      last = sameGroup ? groups.find((g) => sameGroup(g[0], op)) : undefined;
      if (!last) groups.push(last = []);
    }
    last.push(op);
  }
  args.push(String(groups.length));
  for (const group of groups) args.push(joinHighestFirst(group));
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
  return { keys, args, groups, order: rich };
}

/** The ids of `ops` joined by commas, the highest first (the rest in their order). */
function joinHighestFirst(ops: readonly SettleOpInput[]): string {
  const ids = new Array<string>(ops.length);
  let top = 0;
  for (let i = 0; i < ops.length; i++) {
    ids[i] = ops[i].id;
    if (i > 0 && newerId(ids[i], ids[top])) top = i;
  }
  if (top > 0) [ids[0], ids[top]] = [ids[top], ids[0]];
  return ids.join(",");
}

/** True when stream id `a` (`ms-seq`) is after `b`. */
export function newerId(a: string, b: string): boolean {
  const da = a.indexOf("-");
  const db = b.indexOf("-");
  // Millisecond parts without leading zeros: a longer one is larger.
  if (da !== db) return da > db;
  // Parts of equal lengths (the usual case): the text order is the numeric order.
  if (a.length === b.length) return a > b;
  for (let i = 0; i < da; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca !== cb) return ca > cb;
  }
  const la = a.length - da;
  const lb = b.length - db;
  if (la !== lb) return la > lb;
  return a > b;
}

const FAILURES: ReadonlySet<string> = new Set<SettleFailure>([
  "target_type",
  "dead_letter_type",
  "dedup_key_type",
  "emit_target_type",
  "too_many_fields",
]);

/** Decodes the reply to a call of `groups` groups of bare acknowledgements and `count` other ops. */
export function decodeSettle(reply: unknown, groups: number, count: number): SettleReply {
  if (reply === FENCED) {
    return {
      acked: new Array(groups).fill(0),
      results: new Array(count).fill(FENCED),
      checkpointWritten: true,
      fenced: true,
    };
  }
  if (!Array.isArray(reply) || reply.length !== groups + count + 1) {
    throw new TypeError(
      `Settle script answered ${describe(reply)} for ${groups} groups and ${count} entries`,
    );
  }
  const acked = reply.slice(0, groups).map((r) => {
    const n = Number(r);
    if (!Number.isInteger(n) || n < 0) {
      throw new TypeError(`Settle script answered ${JSON.stringify(r)} for a group`);
    }
    return n;
  });
  const results = reply.slice(groups, groups + count).map((r): SettleResult => {
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
  return { acked, results, checkpointWritten: Number(reply[groups + count]) === 1, fenced: false };
}

/** The whole reply of `SETTLE_FENCED` when the lease is not held. */
const FENCED = "fenced";

function describe(reply: unknown): string {
  return Array.isArray(reply) ? `${reply.length} results` : typeof reply;
}

/**
 * Settles a batch of entries of one stream (see the module comment).
 * KEYS: stream, checkpoint hash, then every other key ops refer to (by index).
 * ARGV: group, consumer, now (ISO), dedup TTL s, field limit, the number G of
 *   groups of bare acknowledgements, G arguments of ids joined by commas (the
 *   group's highest id first), then per other op: id, kind, dedupKeyIndex (0
 *   for none), targetCount, targetKeyIndex…, extraCount, extra…, writeCount,
 *   then per write: keyIndex, fieldCount, field…
 * A group is acknowledged with two XACK calls: its highest id alone (so the
 * checkpoint is exactly the highest id acknowledged), then the rest in one
 * multi-id XACK. Only when the highest was not pending any more (acknowledged
 * elsewhere: rare) are the rest acknowledged one by one, to find the highest
 * that was. Bare acknowledgements need no check before writing: XACK of an
 * id not pending writes nothing.
 * Returns per group the number of its ids XACK took effect for; per other op
 * 1 settled, 0 not pending for this consumer, 2 acknowledged without a copy
 * (the entry is gone), or a failure reason (nothing written); then 1 when the
 * checkpoint could be written (or there was nothing to write), else 0.
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
-- newer() for ids of equal length and millisecond digits: the text order (the usual case).
local function later(a, b)
  if #a == #b and string.find(a, '-', 1, true) == string.find(b, '-', 1, true) then
    return a > b
  end
  return newer(a, b)
end
local results = {}
local best = nil
local function track(id)
  if best == nil or later(id, best) then best = id end
end
local ngroups = tonumber(ARGV[6])
for g = 1, ngroups do
  local ids = {}
  for id in string.gmatch(ARGV[6 + g], '[^,]+') do ids[#ids + 1] = id end
  local n = redis.call('XACK', stream, group, ids[1])
  if n == 1 then
    track(ids[1])
    if #ids > 1 then n = n + redis.call('XACK', stream, group, unpack(ids, 2)) end
  else
    for j = 2, #ids do
      if redis.call('XACK', stream, group, ids[j]) == 1 then
        track(ids[j])
        n = n + 1
      end
    end
  end
  results[#results + 1] = n
end
-- The other ops: parsed first, so that their checks can be batched (one XPENDING and one
-- XRANGE over the range of their ids, not one of each per op: Lua's redis.call costs
-- about a microsecond each, more than most of these commands).
local ops = {}
local lo, hi = nil, nil
local i = 7 + ngroups
while i <= #ARGV do
  local op = { id = ARGV[i], kind = ARGV[i + 1], dedup = tonumber(ARGV[i + 2]),
    nt = tonumber(ARGV[i + 3]) }
  op.tstart = i + 4
  op.ne = tonumber(ARGV[op.tstart + op.nt])
  op.estart = op.tstart + op.nt + 1
  op.nw = tonumber(ARGV[op.estart + op.ne])
  op.wstart = op.estart + op.ne + 1
  i = op.wstart
  for _ = 1, op.nw do i = i + 2 + tonumber(ARGV[i + 1]) end
  ops[#ops + 1] = op
  if lo == nil or later(lo, op.id) then lo = op.id end
  if hi == nil or later(op.id, hi) then hi = op.id end
end
-- 1. Checks: nothing is written for an op that fails one.
-- Pending for this consumer: one XPENDING over [lo, hi] (only this consumer's entries);
-- when it was cut at its COUNT, the ids after its last row are asked one by one.
local mine, known = {}, hi
if #ops > 0 then
  local limit = 2 * #ops + 64
  local rows = redis.call('XPENDING', stream, group, lo, hi, limit, consumer)
  for r = 1, #rows do mine[rows[r][1]] = true end
  if #rows >= limit then known = rows[#rows][1] end
end
local need = {}
local flo, fhi = nil, nil
for _, op in ipairs(ops) do
  local id = op.id
  local pend = mine[id]
  if not pend and later(id, known) then
    local p = redis.call('XPENDING', stream, group, id, id, 1)
    pend = #p == 1 and p[1][2] == consumer
  end
  if not pend then op.result = 0 end
  if not op.result and op.dedup > 0 then
    local t = ktype(KEYS[op.dedup])
    if t ~= 'none' and t ~= 'string' then op.result = 'dedup_key_type' end
  end
  if not op.result then
    for t = 0, op.nt - 1 do
      local ty = ktype(KEYS[tonumber(ARGV[op.tstart + t])])
      if ty ~= 'none' and ty ~= 'stream' then
        if op.kind == 'd' then op.result = 'dead_letter_type' else op.result = 'target_type' end
        break
      end
    end
  end
  if not op.result then
    local w = op.wstart
    for _ = 1, op.nw do
      local ty = ktype(KEYS[tonumber(ARGV[w])])
      if ty ~= 'none' and ty ~= 'stream' then
        op.result = 'emit_target_type'
        break
      end
      w = w + 2 + tonumber(ARGV[w + 1])
    end
  end
  if not op.result and op.nt > 0 then
    need[#need + 1] = op
    if flo == nil or later(flo, id) then flo = id end
    if fhi == nil or later(id, fhi) then fhi = id end
  end
end
-- The entries to copy: one XRANGE over [flo, fhi], the ids after a cut one by one.
local entries, fknown = {}, fhi
if #need > 0 then
  local limit = 2 * #need + 64
  local rows = redis.call('XRANGE', stream, flo, fhi, 'COUNT', limit)
  for r = 1, #rows do entries[rows[r][1]] = rows[r][2] end
  if #rows >= limit then fknown = rows[#rows][1] end
end
for _, op in ipairs(need) do
  local f = entries[op.id]
  if f == nil and later(op.id, fknown) then
    local e = redis.call('XRANGE', stream, op.id, op.id)
    if #e == 1 then f = e[1][2] end
  end
  -- The copy is made in the entry's own field list (fresh for this script).
  if op.kind == 'f' then
    if f == nil then
      op.copy = false
    elseif #f > 2 * maxFields then
      op.result = 'too_many_fields'
    else
      local h = nil
      for j = 1, #f, 2 do
        if f[j] == 'headers' then h = j end
      end
      if h then
        f[h + 1] = ARGV[op.estart]
      else
        f[#f + 1] = 'headers'
        f[#f + 1] = ARGV[op.estart]
      end
      op.copy = f
    end
  else
    -- A dead-letter copy keeps as many leading fields as fit the field limit.
    local copy = f or {}
    for j = #copy, 2 * maxFields + 1, -1 do copy[j] = nil end
    for j = 0, op.ne - 1 do copy[#copy + 1] = ARGV[op.estart + j] end
    op.copy = copy
  end
end
-- 2. Writes, only for the ops that passed every check; their XACK (each returns 1: checked
-- pending for this consumer above, in this same atomic script) in one call after them.
local acks = {}
for _, op in ipairs(ops) do
  if not op.result then
    if op.copy then
      for t = 0, op.nt - 1 do
        redis.call('XADD', KEYS[tonumber(ARGV[op.tstart + t])], '*', unpack(op.copy))
      end
    end
    local w = op.wstart
    for _ = 1, op.nw do
      local nf = tonumber(ARGV[w + 1])
      redis.call('XADD', KEYS[tonumber(ARGV[w])], '*', unpack(ARGV, w + 2, w + 1 + nf))
      w = w + 2 + nf
    end
    if op.dedup > 0 then redis.call('SET', KEYS[op.dedup], op.id, 'EX', ttl) end
    acks[#acks + 1] = op.id
    track(op.id)
    if op.copy == false then op.result = 2 else op.result = 1 end
  end
  results[#results + 1] = op.result
end
if #acks > 0 then redis.call('XACK', stream, group, unpack(acks)) end
local cp = 1
if best then
  -- No TYPE call: HGET of a key of another type answers an error (and writes nothing).
  local cur = redis.pcall('HGET', ckey, consumer)
  if type(cur) == 'table' and cur.err then
    cp = 0
  elseif (not cur) or newer(best, cur) then
    redis.call('HSET', ckey, consumer, best, consumer .. ':at', now)
  else
    redis.call('HSET', ckey, consumer .. ':at', now)
  end
end
results[#results + 1] = cp
return results
`);

/**
 * `SETTLE` fenced by the partition's lease (partitioned streams, see `LEASE_CHECK`): KEYS[3]
 * is the lease key (`SettleBatch.leaseKey`), ARGV[2] the consumer, the lease's owner. One check
 * for the whole batch (a batch is one stream, so one partition), before any write: when the
 * lease does not name this consumer, nothing is written and the reply is \`fenced\`: the
 * entries stay pending for the new owner.
 */
export const SETTLE_FENCED = new LuaScript(SETTLE.source.replace(
  "#!lua\n",
  `#!lua
${LEASE_CHECK}
if not lease_held(KEYS[3], ARGV[2]) then return 'fenced' end
`,
));
