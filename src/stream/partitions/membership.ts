/**
 * The membership record of a partitioned stream (README "Redis Cluster and partitioned
 * streams"): a sorted set `{<stream>}:members:<group>` (KeySchema.members) of the live
 * instances' CONSUMER_NAMEs, each scored by the time its membership expires. An instance
 * heartbeats well within the lease time; one that stops (killed, paused, partitioned away)
 * drops out once its score is past. Expiry is judged by the Redis server's clock (`TIME`), so
 * instances with skewed clocks agree. Each script touches one key.
 */
import { type Commander, Script } from "../../redis/commander.ts";

/** Lua: the server's time in ms. */
const NOW_MS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * Heartbeat. KEYS: members. ARGV: member, ttl ms.
 * Sets the member's expiry to now + ttl, drops expired members, keeps the key itself for a
 * while past the last heartbeat (so a dead group leaves nothing behind), and returns the live
 * members (unsorted).
 */
const HEARTBEAT = new Script(`${NOW_MS}
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl * 10)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
`);

/**
 * Live members. KEYS: members. Returns { now, member, expiry, member, expiry, … } of the members
 * whose expiry is in the future (read-only: expired ones are removed by the next heartbeat).
 */
const LIVE = new Script(`${NOW_MS}
local out = { tostring(now) }
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
for i = 1, #rows do out[#out + 1] = rows[i] end
return out
`);

/** A live member and when its membership expires (server clock, ms since the epoch). */
export interface Member {
  name: string;
  expiresAt: number;
}

/** The live members of one record, read at the server's `now`. */
export interface LiveMembers {
  /** The server's time of the read (ms since the epoch). */
  now: number;
  /** Live members sorted by name. */
  members: Member[];
}

/** Heartbeats into, reads and leaves one membership record. */
export class Membership {
  readonly #cmd: Commander;
  readonly #key: string;
  readonly #member: string;
  readonly #ttlMs: number;

  /**
   * `key`: the record (`KeySchema.members(stream)`); `member`: this instance's CONSUMER_NAME;
   * `ttlMs`: how long one heartbeat keeps it a member (PARTITION_LEASE_MS).
   */
  constructor(cmd: Commander, key: string, member: string, ttlMs: number) {
    if (!member) throw new TypeError("member must not be empty");
    if (!(Number.isInteger(ttlMs) && ttlMs > 0)) {
      throw new RangeError(`ttlMs must be a positive integer, got ${ttlMs}`);
    }
    this.#cmd = cmd;
    this.#key = key;
    this.#member = member;
    this.#ttlMs = ttlMs;
  }

  /** The record's key. */
  get key(): string {
    return this.#key;
  }

  /** Renews this instance's membership; resolves to the live members, sorted (self included). */
  async heartbeat(): Promise<string[]> {
    const reply = await HEARTBEAT.run(this.#cmd, [this.#key], [this.#member, String(this.#ttlMs)]);
    return (reply as string[]).map(String).sort();
  }

  /** The live members with their expiry, sorted by name. */
  async live(): Promise<LiveMembers> {
    return await readLive(this.#cmd, this.#key);
  }

  /** Leaves the record at once (graceful stop), so the others rebalance without waiting. */
  async leave(): Promise<void> {
    await this.#cmd.send(this.#key, ["ZREM", this.#key, this.#member]);
  }
}

/** The live members of the record `key`, sorted by name, with the server's time of the read. */
export async function readLive(cmd: Commander, key: string): Promise<LiveMembers> {
  const reply = (await LIVE.run(cmd, [key], [])) as string[];
  const members: Member[] = [];
  for (let i = 1; i + 1 < reply.length; i += 2) {
    members.push({ name: String(reply[i]), expiresAt: Number(reply[i + 1]) });
  }
  members.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { now: Number(reply[0]), members };
}
