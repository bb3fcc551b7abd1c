/**
 * The settle scripts: `SETTLE` (check, then write only the ops that pass: see
 * `settle_codec.ts` for what it does and the arguments it takes) and
 * `SETTLE_FENCED` (the same, behind a partition lease check).
 */
import { LEASE_CHECK } from "../partitions/leases.ts";
import { ID_COMPARE, LuaScript } from "../scripts.ts";

/**
 * Settles a batch of entries of one stream (see the module comment).
 * KEYS: stream, checkpoint hash, then every other key ops refer to (by index).
 * ARGV: as `encodeSettle` (`settle_codec.ts`) lays them out: the batch's arguments, the groups of
 *   bare acknowledgements, the range of the other ops' ids, the groups of plain forwards (their
 *   targets, headers prefix, modes, number of ids, field count of `#` entries, ids, given
 *   arguments: a `#` entry's id and fields, as read, copied without an XRANGE), then the other
 *   ops. A copy's target is a key index, or `<outbox key index>|<copy index>|<target stream>`
 *   for a copy through the outbox (cross-slot mode, `outbox_codec.ts`): the outbox entry is
 *   `target <stream> origin <id>:<copy index>` then the copy's fields.
 * A group is acknowledged with two XACK calls: its highest id alone (so the
 * checkpoint is exactly the highest id acknowledged), then the rest in one
 * multi-id XACK. Only when the highest was not pending any more (acknowledged
 * elsewhere: rare) are the rest acknowledged one by one, to find the highest
 * that was. Bare acknowledgements need no check before writing: XACK of an
 * id not pending writes nothing. A plain forward is acknowledged by its own
 * XACK, and copied only when that took effect (spec section 5: "XACK returns
 * 1"); the other ops are checked pending for this consumer first.
 * Returns per group the number of its ids XACK took effect for; per other op
 * 1 settled, 0 not pending (a plain forward: in the group; any other op: for
 * this consumer), 2 acknowledged without a copy (the entry is gone: a `#` entry
 * is copied from its fields all the same), or a failure reason (nothing
 * written); then 1 when the checkpoint could be written (or there was nothing to
 * write), else 0.
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
-- A copy's target: a KEYS index, or 'k|n|name' for copy n (of the entry's copies to it) to
-- stream name (another slot) through the outbox KEYS[k], led by the fields 'target' and
-- 'origin' (OUTBOX_TARGET_FIELD and OUTBOX_ORIGIN_FIELD of outbox_codec.ts).
local function target(spec)
  local k = tonumber(spec)
  if k then return k, nil end
  local bar = string.find(spec, '|', 1, true)
  local bar2 = string.find(spec, '|', bar + 1, true)
  return tonumber(string.sub(spec, 1, bar - 1)), string.sub(spec, bar2 + 1),
    string.sub(spec, bar + 1, bar2 - 1)
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
-- Plain forwards (a ROUTES copy, no mark, no emits: every entry under ROUTES), by group of
-- targets; no table per op. Per group: its targets (parsed once), whether their key types allow
-- an XADD, the text that extends an entry's own headers before its id, its modes, its number of
-- ids, the number of fields of each of its '#' entries, its ids as sent (one text, split only
-- when the checks below need it; empty when every entry is '#') and the ARGV index of its first
-- given argument.
local lo, hi = ARGV[7 + ngroups], ARGV[8 + ngroups]
local i = 9 + ngroups
local gtargets, gtyped, gprefix, gmodes, gcount, gids, ghead = {}, {}, {}, {}, {}, {}, {}
local graw = {}
-- True while every group's entries are all '#' (their fields given: no XRANGE, no ids to split).
local allRaw = true
local nforwards, nfwd = tonumber(ARGV[i]), 0
i = i + 1
for g = 1, nforwards do
  local nt = tonumber(ARGV[i])
  local targets, typed = {}, true
  for t = 1, nt do
    local k, via, n = target(ARGV[i + t])
    targets[t] = { k, via, n }
    local ty = ktype(KEYS[k])
    if ty ~= 'none' and ty ~= 'stream' then typed = false end
  end
  gtargets[g], gtyped[g] = targets, typed
  i = i + nt + 1
  local modes, n, rawN = ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  gprefix[g], gmodes[g], gcount[g], graw[g] = ARGV[i], modes, n, rawN
  gids[g], ghead[g] = ARGV[i + 4], i + 5
  nfwd = nfwd + n
  if modes ~= '#' then allRaw = false end
  -- Given arguments: one (its new headers) per '=' id, 1 + rawN (its id, its fields) per '#'.
  local given = 0
  if #modes > 1 then
    given = select(2, string.gsub(modes, '=', '')) +
      select(2, string.gsub(modes, '#', '')) * (1 + rawN)
  elseif modes == '=' then given = n
  elseif modes == '#' then given = n * (1 + rawN) end
  i = i + 5 + given
end
-- The other ops: parsed first, so that their checks can be batched (one XPENDING and one
-- XRANGE over the range of their ids, not one of each per op: Lua's redis.call costs
-- about a microsecond each, more than most of these commands).
local ops = {}
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
end
-- 1. The other ops' entries pending for this consumer: one XPENDING over [lo, hi] (only this
-- consumer's entries; plain forwards are checked by their own XACK, in 3.); when it was cut at its COUNT, the ids after its last row are asked one by one.
-- The rows come in id order, and so are the ids asked about, usually: each is first compared
-- with the next row; a set of all the rows is made only for an id out of that order.
local prows, pnext, mine, known = {}, 1, nil, hi
local nops = nfwd + #ops
if #ops > 0 then
  local limit = 2 * nops + 64
  prows = redis.call('XPENDING', stream, group, lo, hi, limit, consumer)
  if #prows >= limit then known = prows[#prows][1] end
end
-- True when entry id is pending for this consumer (asked once per id).
local function pending(id)
  local row = prows[pnext]
  if row and row[1] == id then
    pnext = pnext + 1
    return true
  end
  if not mine then
    mine = {}
    for r = 1, #prows do mine[prows[r][1]] = true end
  end
  if mine[id] then return true end
  if not later(id, known) then return false end
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  return #p == 1 and p[1][2] == consumer
end
-- The entries to copy: one XRANGE over [lo, hi] at the first copy, the ids after a cut one by
-- one. In id order too (see prows above): the next row first, a map only for an id out of order.
local erows, enext, entries, fknown = nil, 1, nil, hi
local function entryRows()
  if not erows then
    local limit = 2 * nops + 64
    erows = redis.call('XRANGE', stream, lo, hi, 'COUNT', limit)
    if #erows >= limit then fknown = erows[#erows][1] end
  end
  return erows
end
local function fieldsOf(id)
  entryRows()
  local row = erows[enext]
  if row and row[1] == id then
    enext = enext + 1
    return row[2]
  end
  if not entries then
    entries = {}
    for r = 1, #erows do entries[erows[r][1]] = erows[r][2] end
  end
  local f = entries[id]
  if f == nil and later(id, fknown) then
    local e = redis.call('XRANGE', stream, id, id)
    if #e == 1 then f = e[1][2] end
  end
  return f
end
-- A forwarded copy, made in the entry's own field list f (fresh for this script): its last
-- headers field set to headers (appended when it has none). Without headers, they are that
-- field extended with prefix, the entry's id and '"}' (forwardHeaders of entry.ts: the
-- process sent none, having found the field to be the JSON of the entry's headers). False
-- when the entry is gone (acknowledged without a copy); nil and a reason over the field limit.
local function forwardCopy(f, headers, prefix, id)
  if f == nil then return false end
  if #f > 2 * maxFields then return nil, 'too_many_fields' end
  local h = nil
  for j = #f - 1, 1, -2 do
    if f[j] == 'headers' then
      h = j
      break
    end
  end
  if not headers then
    local own = h and f[h + 1]
    if own and own ~= '{}' then
      headers = string.sub(own, 1, -2) .. ',' .. prefix .. id .. '"}'
    else
      headers = '{' .. prefix .. id .. '"}'
    end
  end
  if h then
    f[h + 1] = headers
  else
    f[#f + 1] = 'headers'
    f[#f + 1] = headers
  end
  return f
end
-- 2. The other ops' checks, before anything is written: nothing is written for an op that
-- fails one.
local need = {}
for _, op in ipairs(ops) do
  if not pending(op.id) then op.result = 0 end
  if not op.result and op.dedup > 0 then
    local t = ktype(KEYS[op.dedup])
    if t ~= 'none' and t ~= 'string' then op.result = 'dedup_key_type' end
  end
  if not op.result then
    for t = 0, op.nt - 1 do
      local ty = ktype(KEYS[(target(ARGV[op.tstart + t]))])
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
  end
end
-- 3. Plain forwards, one at a time: its checks that need no state (its targets' key types, the
-- entry still there, the field limit), then its XACK, and only when that took effect (1: it was
-- pending) its copies; otherwise nothing. The XACK comes before the copies, but nothing can fail
-- after it: every way a copy's XADD could fail was checked before (OOM is refused when a script
-- starts, not midway). A '#' entry's fields come with it, as the process read them, its headers
-- extended already (settle_command.ts): it is copied from those, with no XRANGE (even when
-- deleted since: it was read, and is acknowledged now). The other entries' ids: the usual batch
-- of those is plain forwards alone, in id order, with no other entry between them; the XRANGE
-- rows are then exactly their ids (compared as one text), so the ids need no splitting and each
-- row is its entry's.
local erowsAll, fid, inLine = nil, nil, false
if not allRaw then
  if nfwd > 0 and #ops == 0 then
    erowsAll = entryRows()
    if #erowsAll == nfwd then
      fid = {}
      for r = 1, nfwd do fid[r] = erowsAll[r][1] end
      inLine = table.concat(fid, ',') == table.concat(gids, ',')
    end
  end
  if not inLine then
    fid = {}
    for g = 1, nforwards do
      if gmodes[g] == '#' then
        for _ = 1, gcount[g] do fid[#fid + 1] = false end
      else
        for id in string.gmatch(gids[g], '[^,]+') do fid[#fid + 1] = id end
      end
    end
  end
end
local acks, nacks, nres = {}, 0, #results
-- The plain forwards acknowledged (for the checkpoint).
local facks, nfacks = {}, 0
-- Copies of an entry (fields: unpack(list, a, e)) to targets.
local function copyTo(targets, id, list, a, e)
  for t = 1, #targets do
    local key, via, n = targets[t][1], targets[t][2], targets[t][3]
    if via then
      redis.call('XADD', KEYS[key], '*', 'target', via, 'origin', id .. ':' .. n,
        unpack(list, a, e))
    else
      redis.call('XADD', KEYS[key], '*', unpack(list, a, e))
    end
  end
end
-- One plain forward of id to targets: its fields f (nil when the entry is gone) and its new
-- headers given in head (or nil); or, for a '#' entry, f nil and its fields ARGV[a, a+rawN).
-- Returns its result.
local function forward(id, f, head, targets, typed, prefix, a, rawN)
  if not typed then return 'target_type' end
  if (f and #f > 2 * maxFields) or (a and rawN > 2 * maxFields) then
    return 'too_many_fields'
  end
  if redis.call('XACK', stream, group, id) == 0 then return 0 end
  nfacks = nfacks + 1
  facks[nfacks] = id
  if a then
    copyTo(targets, id, ARGV, a, a + rawN - 1)
    return 1
  end
  if not f then return 2 end
  local copy = forwardCopy(f, head, prefix, id)
  copyTo(targets, id, copy, 1, #copy)
  return 1
end
local f = 0
for g = 1, nforwards do
  local targets, typed, prefix = gtargets[g], gtyped[g], gprefix[g]
  local modes, h, rawN = gmodes[g], ghead[g], graw[g]
  local all = #modes == 1 and string.byte(modes) or nil
  local keys = {}
  for t = 1, #targets do
    if targets[t][2] then keys = nil break end
    keys[t] = KEYS[targets[t][1]]
  end
  if all == 35 and typed and keys and rawN <= 2 * maxFields then
    -- The usual group under ROUTES on one Redis: every entry '#' (its id, then its fields), its
    -- copies made here, none through an outbox.
    for _ = 1, gcount[g] do
      local id, r = ARGV[h], 0
      if redis.call('XACK', stream, group, id) == 1 then
        nfacks = nfacks + 1
        facks[nfacks] = id
        for t = 1, #keys do redis.call('XADD', keys[t], '*', unpack(ARGV, h + 1, h + rawN)) end
        r = 1
      end
      h = h + 1 + rawN
      nres = nres + 1
      results[nres] = r
    end
    f = f + gcount[g]
  elseif inLine and typed and keys and not string.find(modes, '#', 1, true) then
    -- The usual group under ROUTES on a cluster: each row is its entry's (checked above), its
    -- copies made here, none through an outbox.
    for k = 1, gcount[g] do
      f = f + 1
      local id, row, head, r = fid[f], erowsAll[f], nil, 0
      if (all or string.byte(modes, k)) == 61 then -- '=': its new headers are the next given
        head = ARGV[h]
        h = h + 1
      end
      if #row[2] > 2 * maxFields then
        r = 'too_many_fields'
      elseif redis.call('XACK', stream, group, id) == 1 then
        nfacks = nfacks + 1
        facks[nfacks] = id
        local copy = forwardCopy(row[2], head, prefix, id)
        for t = 1, #keys do redis.call('XADD', keys[t], '*', unpack(copy)) end
        r = 1
      end
      nres = nres + 1
      results[nres] = r
    end
  else
    for k = 1, gcount[g] do
      f = f + 1
      local c = all or string.byte(modes, k)
      nres = nres + 1
      if c == 35 then -- '#': its id, then its fields
        results[nres] = forward(ARGV[h], nil, nil, targets, typed, prefix, h + 1, rawN)
        h = h + 1 + rawN
      else
        local id, head = fid[f], nil
        if c == 61 then -- '=': its new headers are the next given
          head = ARGV[h]
          h = h + 1
        end
        results[nres] = forward(id, fieldsOf(id), head, targets, typed, prefix)
      end
    end
  end
end
-- 4. The other ops that passed every check: their copies, then their writes.
for _, op in ipairs(need) do
  local f = fieldsOf(op.id)
  if op.kind == 'f' then
    local copy, failure = forwardCopy(f, ARGV[op.estart])
    op.copy, op.result = copy, failure
  else
    -- A dead-letter copy keeps as many leading fields as fit the field limit.
    local copy = f or {}
    for j = #copy, 2 * maxFields + 1, -1 do copy[j] = nil end
    for j = 0, op.ne - 1 do copy[#copy + 1] = ARGV[op.estart + j] end
    op.copy = copy
  end
end
for _, op in ipairs(ops) do
  if not op.result then
    if op.copy then
      for t = 0, op.nt - 1 do
        local k, via, n = target(ARGV[op.tstart + t])
        if via then
          redis.call('XADD', KEYS[k], '*', 'target', via, 'origin', op.id .. ':' .. n,
            unpack(op.copy))
        else
          redis.call('XADD', KEYS[k], '*', unpack(op.copy))
        end
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
    if op.copy == false then op.result = 2 else op.result = 1 end
  end
  results[#results + 1] = op.result
end
-- The XACK of every other op written (each returns 1: checked pending for this consumer above,
-- in this same atomic script), in one call after the writes.
if #acks > 0 then redis.call('XACK', stream, group, unpack(acks)) end
-- The checkpoint: hi when every op was acknowledged (the usual case), else the highest acked.
if #acks + nfacks == nops then
  if nops > 0 then track(hi) end
else
  for _, id in ipairs(acks) do track(id) end
  for j = 1, nfacks do track(facks[j]) end
end
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
