/**
 * Lua scripts that make the delivery guarantees atomic: refreshing or
 * re-claiming entries only while this consumer still owns them, removing idle consumers only without pending entries, and
 * publishing once per idempotency key. (The settle script lives beside its
 * argument encoding in `consumer/settle_codec.ts`.)
 *
 * Every key a script touches is passed in KEYS, so on Redis Cluster they must
 * share a hash slot: name streams with a common hash tag, e.g. `{orders}.in`
 * and `{orders}.out`.
 */
import type { RedisSender } from "../redis/link.ts";

/** A Lua script run by EVALSHA, loaded on NOSCRIPT. */
export class LuaScript {
  readonly source: string;
  #sha?: string;

  constructor(source: string) {
    this.source = source;
  }

  /** Its SHA1, once loaded (`run`, `load`). */
  get sha(): string | undefined {
    return this.#sha;
  }

  /** Loads the script (SCRIPT LOAD; again after NOSCRIPT: Redis restarted or flushed it). */
  async load(client: RedisSender): Promise<string> {
    return this.#sha = String(await client.sendCommand(["SCRIPT", "LOAD", this.source]));
  }

  /** Runs the script; the reply is Redis' raw RESP2 reply. */
  async run(
    client: RedisSender,
    keys: readonly string[],
    args: readonly string[],
  ): Promise<unknown> {
    if (!this.#sha) {
      this.#sha = String(await client.sendCommand(["SCRIPT", "LOAD", this.source]));
    }
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await client.sendCommand(["EVALSHA", this.#sha, ...tail]);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      // Redis restarted or flushed its script cache.
      this.#sha = String(await client.sendCommand(["SCRIPT", "LOAD", this.source]));
      return await client.sendCommand(["EVALSHA", this.#sha, ...tail]);
    }
  }
}

/** Lua `newer(a, b)`: true when entry id `a` is greater than `b` (or `b` is not an id). */
export const ID_COMPARE = `
local function newer(a, b)
  local ams, aseq = string.match(a, "^(%d+)-(%d+)$")
  local bms, bseq = string.match(b, "^(%d+)-(%d+)$")
  if not bms then return true end
  if not ams then return false end
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  if ams ~= bms then return ams > bms end
  return aseq > bseq
end
`;

/**
 * Claims entries only where this consumer still owns them.
 * KEYS: stream. ARGV: group, consumer, mode ("keepalive" | "claim"), id…
 * keepalive: XCLAIM … JUSTID (idle reset, delivery counter unchanged);
 *   returns the ids refreshed.
 * claim: XCLAIM (counter + 1); returns per owned id {id, deliveries, fields}
 *   where fields is an empty array when the entry was deleted.
 */
export const CLAIM_OWN = new LuaScript(`
local key, group, consumer, mode = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', key, group, id, id, 1)
  if #p == 1 and p[1][2] == consumer then
    if mode == 'keepalive' then
      redis.call('XCLAIM', key, group, consumer, 0, id, 'JUSTID')
      out[#out + 1] = id
    else
      local c = redis.call('XCLAIM', key, group, consumer, 0, id)
      local fields = {}
      if #c == 1 and c[1] and c[1][2] then fields = c[1][2] end
      out[#out + 1] = {id, p[1][4] + 1, fields}
    end
  end
end
return out
`);

/**
 * Delivery counters of pending entries. KEYS: stream. ARGV: group, id…
 * Returns per id its counter, 0 when not pending.
 */
export const DELIVERY_COUNTS = new LuaScript(`
local out = {}
for i = 2, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 then out[#out + 1] = p[1][4] else out[#out + 1] = 0 end
end
return out
`);

/**
 * Removes a consumer only when it has nothing pending (DELCONSUMER would drop
 * its pending entries). KEYS: stream. ARGV: group, consumer. Returns 1 when removed.
 */
export const DELETE_IDLE_CONSUMER = new LuaScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
`);

/**
 * Publishes once per idempotency key.
 * KEYS: idempotency key, stream. ARGV: TTL s, record JSON (without id), field…
 * Returns {1, record} when published now, {0, record} for a repeat, where
 * record is the JSON of the first publication with its id.
 */
export const PUBLISH_ONCE = new LuaScript(`
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
local rec = cjson.decode(ARGV[2])
rec['id'] = id
local text = cjson.encode(rec)
redis.call('SET', KEYS[1], text, 'EX', ARGV[1])
return {1, text}
`);

/**
 * Claims entries of OTHER consumers idle at least `minIdle` ms (XAUTOCLAIM
 * would also claim this consumer's own entries, raising the delivery counters
 * of entries whose handlers still run here after a long pause).
 * KEYS: stream. ARGV: group, consumer, minIdle, count, start (XPENDING range start),
 * and optionally "own": this consumer's entries too (a partition taken over: every pending
 * entry in id order, its own leftovers from an earlier ownership included).
 * Returns {next start or "" when done, {{id, deliveries, fields}…}, {deleted id…}}:
 * entries gone from the stream are dropped from the pending list (XCLAIM does
 * that) and reported as deleted.
 */
export const CLAIM_IDLE = new LuaScript(`
local key, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local minIdle, count, start = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local own = ARGV[6] == 'own'
local rows = redis.call('XPENDING', key, group, 'IDLE', minIdle, start, '+', count)
local claimed, deleted = {}, {}
for _, r in ipairs(rows) do
  local id = r[1]
  if own or r[2] ~= consumer then
    local exists = #redis.call('XRANGE', key, id, id) == 1
    local c = redis.call('XCLAIM', key, group, consumer, minIdle, id)
    if not exists then
      deleted[#deleted + 1] = id
    elseif #c == 1 and c[1] and c[1][2] then
      claimed[#claimed + 1] = {id, r[4] + 1, c[1][2]}
    end
  end
end
local nextStart = ''
if #rows == count then nextStart = '(' .. rows[#rows][1] end
return {nextStart, claimed, deleted}
`);
