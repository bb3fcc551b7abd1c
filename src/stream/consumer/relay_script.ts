/**
 * The relay's scripts (see `relay.ts` and docs/architecture.md "The outbox and the relay"):
 * `RELAY` writes copies to their target with a dedup mark each, in the target's slot;
 * `OUTBOX_DONE` acknowledges and deletes relayed entries of an outbox, in the source's slot.
 * Both run through `Script` (`src/redis/commander.ts`), so on a cluster each on its own node.
 */
import { Script } from "../../redis/commander.ts";

/**
 * Writes copies of outbox entries to one target, each at most once.
 * KEYS: the target stream, then per copy its relay mark (`KeySchema.relayMark`, the target's
 * slot). ARGV: the mark's TTL in seconds, then per copy: field count, field…
 * Checks first that the target is a stream (or absent): else nothing is written and the reply
 * is `target_type`. Then per copy: when its mark exists, nothing (0: copied before, by a relay
 * that did not get to acknowledge the outbox entry); else XADD the copy and SET the mark to the
 * new id with the TTL (1). A copy and its mark are written by one script, so a crash or a retry
 * can never leave a copy without its mark.
 */
export const RELAY = new Script(`#!lua
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'stream' then return 'target_type' end
local ttl = ARGV[1]
local out = {}
local i = 2
for c = 2, #KEYS do
  local n = tonumber(ARGV[i])
  if redis.call('EXISTS', KEYS[c]) == 1 then
    out[#out + 1] = 0
  else
    local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + n))
    redis.call('SET', KEYS[c], id, 'EX', ttl)
    out[#out + 1] = 1
  end
  i = i + 1 + n
end
return out
`);

/**
 * Acknowledges relayed outbox entries in the relay's group and deletes them from the outbox, in
 * one step (no entry is left acknowledged and never deleted). KEYS: the outbox. ARGV: the
 * relay's group, id… Returns the number deleted.
 */
export const OUTBOX_DONE = new Script(`#!lua
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
`);
