/**
 * Partition leases (README "Redis Cluster and partitioned streams"): the key
 * `{<stream>:<i>}:lease:<group>` (KeySchema.lease) holds the owner's CONSUMER_NAME and expires
 * after PARTITION_LEASE_MS unless renewed. Only the owner renews or releases it (compare-and-
 * PEXPIRE, compare-and-DEL), so a former owner that was paused past its lease can neither extend
 * nor drop the new owner's lease. `LEASE_CHECK` is the fencing test a settle script includes:
 * its acknowledgements only happen while the lease still names this consumer. Each script
 * touches one key, in the partition's slot.
 */
import { type Commander, Script } from "../../redis/commander.ts";

/**
 * Lua for a settle script: `lease_held(key, owner)` is true when the lease key holds `owner`.
 * The script passes the lease key in KEYS (it shares the partition's slot) and the owner in
 * ARGV, and writes nothing when it is false (fenced: the entries stay pending for the new
 * owner). An expired lease that nobody took yet is not held either.
 */
export const LEASE_CHECK = `
local function lease_held(key, owner)
  return redis.call('GET', key) == owner
end
`;

/**
 * Acquire. KEYS: lease. ARGV: owner, ttl ms.
 * Takes a free lease (SET NX PX); a lease this owner already holds is renewed. 1 when this owner
 * holds the lease afterwards, else 0.
 */
const ACQUIRE = new Script(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`);

/** Renew. KEYS: lease. ARGV: owner, ttl ms. PEXPIRE only when the owner holds it: 1, else 0. */
const RENEW = new Script(`${LEASE_CHECK}
if lease_held(KEYS[1], ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`);

/** Release. KEYS: lease. ARGV: owner. DEL only when the owner holds it: 1, else 0. */
const RELEASE = new Script(`${LEASE_CHECK}
if lease_held(KEYS[1], ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`);

/** Read. KEYS: lease. Returns { owner or false, pttl, server time ms }. */
const READ = new Script(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return { redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), tostring(now) }
`);

/** The state of one lease. */
export interface LeaseState {
  /** CONSUMER_NAME of the holder; `undefined` when the lease is free. */
  owner?: string;
  /** When it expires (server clock, ms since the epoch); `undefined` when free. */
  expiresAt?: number;
  /** Milliseconds left; `undefined` when free. */
  ttlMs?: number;
}

/** Takes, renews, releases and reads the leases of one owner (this instance). */
export class Leases {
  readonly #cmd: Commander;
  readonly #owner: string;
  readonly #ttlMs: number;

  /** `owner`: this instance's CONSUMER_NAME; `ttlMs`: PARTITION_LEASE_MS. */
  constructor(cmd: Commander, owner: string, ttlMs: number) {
    if (!owner) throw new TypeError("owner must not be empty");
    if (!(Number.isInteger(ttlMs) && ttlMs > 0)) {
      throw new RangeError(`ttlMs must be a positive integer, got ${ttlMs}`);
    }
    this.#cmd = cmd;
    this.#owner = owner;
    this.#ttlMs = ttlMs;
  }

  /** This instance's name, the value its leases hold. */
  get owner(): string {
    return this.#owner;
  }

  /** Takes the lease `key` if free (or renews it if already ours): true when we hold it. */
  async acquire(key: string): Promise<boolean> {
    return await ACQUIRE.run(this.#cmd, [key], [this.#owner, String(this.#ttlMs)]) === 1;
  }

  /** Extends the lease `key` by the lease time, only if we hold it: true when renewed. */
  async renew(key: string): Promise<boolean> {
    return await RENEW.run(this.#cmd, [key], [this.#owner, String(this.#ttlMs)]) === 1;
  }

  /** Deletes the lease `key`, only if we hold it: true when released. */
  async release(key: string): Promise<boolean> {
    return await RELEASE.run(this.#cmd, [key], [this.#owner]) === 1;
  }

  /** Whether we hold the lease `key` now. */
  async held(key: string): Promise<boolean> {
    return (await readLease(this.#cmd, key)).owner === this.#owner;
  }
}

/** The owner and expiry of the lease `key`. */
export async function readLease(cmd: Commander, key: string): Promise<LeaseState> {
  const [owner, pttl, now] = (await READ.run(cmd, [key], [])) as [string | null, number, string];
  if (owner === null || Number(pttl) < 0) return {};
  const ttlMs = Number(pttl);
  return { owner: String(owner), ttlMs, expiresAt: Number(now) + ttlMs };
}

/**
 * When to renew a lease of `ttlMs`: every third of it, so two renewals can fail (or be late)
 * before it expires.
 */
export function renewIntervalMs(ttlMs: number): number {
  return Math.max(1, Math.floor(ttlMs / 3));
}
