/**
 * Partition leases and the membership record (src/stream/partitions/) against a real single
 * `redis-server` and a real local Redis Cluster (3 masters + 3 replicas): acquire, renew and
 * release only by the owner, expiry, the `LEASE_CHECK` fence inside a settle-like script that
 * also writes the partition's stream (one slot, so no CROSSSLOT on a cluster), heartbeats,
 * leaving and expiring members.
 *
 * @module
 */

import {
  clusterCommander,
  type Commander,
  nodeCommander,
  Script,
} from "../../src/redis/commander.ts";
import { KeySchema, partitionKey, partitionKeys, slotOf } from "../../src/stream/keys.ts";
import { LEASE_CHECK, Leases, readLease } from "../../src/stream/partitions/leases.ts";
import { Membership, readLive } from "../../src/stream/partitions/membership.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { startRedisCluster } from "../support/redis_cluster.ts";
import { startRedis } from "../support/redis_server.ts";
import { waitFor } from "../support/wait.ts";

const LEASE_MS = 10_000;
const SHORT_MS = 300;

/** A settle-like script: writes to the partition's stream only while the lease is held. */
const FENCED_WRITE = new Script(`${LEASE_CHECK}
if not lease_held(KEYS[1], ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], '*', 'by', ARGV[1])
return 1
`);

/** The same checks on one backend; `prefix` keeps the keys of two runs apart. */
async function leaseChecks(cmd: Commander, prefix: string): Promise<void> {
  const keys = new KeySchema({ group: "billing" });
  const partition = partitionKey(`${prefix}orders`, 3);
  const lease = keys.lease(partition);
  const a = new Leases(cmd, "pod-a", LEASE_MS);
  const b = new Leases(cmd, "pod-b", LEASE_MS);

  assert(await a.acquire(lease), "a takes the free lease");
  assert(!(await b.acquire(lease)), "b cannot take a's lease");
  const state = await readLease(cmd, lease);
  assertEquals(state.owner, "pod-a");
  assert(state.ttlMs! > 0 && state.ttlMs! <= LEASE_MS, `ttl ${state.ttlMs}`);
  assert(state.expiresAt! > Date.now() - 60_000, "expiry on the server's clock, in ms");
  assert(await a.acquire(lease), "acquiring an own lease renews it");
  assert(!(await b.renew(lease)) && !(await b.release(lease)), "b neither renews nor releases");
  assertEquals((await readLease(cmd, lease)).owner, "pod-a");
  assert(await a.renew(lease) && await a.held(lease) && !(await b.held(lease)));

  // The fence: a settle-like script writes only for the owner.
  assertEquals(await FENCED_WRITE.run(cmd, [lease, partition], ["pod-a"]), 1);
  assertEquals(await FENCED_WRITE.run(cmd, [lease, partition], ["pod-b"]), 0);
  assertEquals(Number(await cmd.send(partition, ["XLEN", partition])), 1);

  assert(await a.release(lease) && !(await a.release(lease)), "released once");
  assertEquals(await readLease(cmd, lease), {});
  assertEquals(await FENCED_WRITE.run(cmd, [lease, partition], ["pod-a"]), 0, "free: fenced");
  assert(await b.acquire(lease), "b takes the released lease");

  // Expiry: a short lease lapses; its former owner can then neither renew nor release the next
  // owner's lease, and its settles are fenced.
  const other = keys.lease(partitionKey(`${prefix}orders`, 4));
  const quick = new Leases(cmd, "pod-a", SHORT_MS);
  assert(await quick.acquire(other));
  await waitFor(async () => (await readLease(cmd, other)).owner === undefined, {
    timeoutMs: 15_000,
    message: "the short lease to expire",
  });
  assert(!(await quick.renew(other)), "an expired lease is not renewed");
  assert(await b.acquire(other));
  assert(!(await quick.release(other)) && !(await quick.renew(other)));
  assertEquals((await readLease(cmd, other)).owner, "pod-b");
  assertEquals(
    await FENCED_WRITE.run(cmd, [other, partitionKey(`${prefix}orders`, 4)], ["pod-a"]),
    0,
  );

  // Every partition's lease of another group, wherever its slot lives.
  const audit = new KeySchema({ group: "audit" });
  for (const p of partitionKeys(`${prefix}orders`, 8)) assert(await a.acquire(audit.lease(p)), p);
}

async function membershipChecks(cmd: Commander, prefix: string): Promise<void> {
  const key = new KeySchema({ group: "billing" }).members(`${prefix}orders`);
  const a = new Membership(cmd, key, "pod-a", LEASE_MS);
  const b = new Membership(cmd, key, "pod-b", LEASE_MS);
  assertEquals(await b.heartbeat(), ["pod-b"]);
  assertEquals(await a.heartbeat(), ["pod-a", "pod-b"]);
  const live = await a.live();
  assertEquals(live.members.map((m) => m.name), ["pod-a", "pod-b"]);
  for (const m of live.members) assert(m.expiresAt > live.now, `${m.name} expires later`);

  await b.leave();
  assertEquals((await readLive(cmd, key)).members.map((m) => m.name), ["pod-a"]);

  // A member that stops heartbeating drops out once its expiry passed.
  const c = new Membership(cmd, key, "pod-c", SHORT_MS);
  assertEquals(await c.heartbeat(), ["pod-a", "pod-c"]);
  await waitFor(async () => (await readLive(cmd, key)).members.length === 1, {
    timeoutMs: 15_000,
    message: "pod-c to expire",
  });
  assertEquals(await a.heartbeat(), ["pod-a"]);
  assertEquals(await cmd.send(key, ["ZSCORE", key, "pod-c"]), null, "removed by the heartbeat");
  const pttl = Number(await cmd.send(key, ["PTTL", key]));
  assert(pttl > 0, "the record expires some time after the last heartbeat");
}

Deno.test("leases and membership on a single redis-server", async () => {
  await using redis = await startRedis();
  const cmd = nodeCommander(await redis.client());
  await leaseChecks(cmd, "");
  await membershipChecks(cmd, "");
});

Deno.test({
  name: "leases and membership on a Redis Cluster: one slot per partition, many masters",
  sanitizeOps: false, // node-redis cluster clients keep timers for their topology refresh.
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await startRedisCluster();
    const client = await cluster.client();
    const cmd = clusterCommander(client);
    await leaseChecks(cmd, "c-");
    await membershipChecks(cmd, "c-");
    // The partitions (and so their leases) live on more than one master.
    const keys = new KeySchema({ group: "audit" });
    const masters = new Set<number>();
    for (const p of partitionKeys("c-orders", 8)) {
      assertEquals(slotOf(keys.lease(p)), slotOf(p));
      masters.add(await cluster.masterOf(keys.lease(p)));
      assertEquals((await readLease(cmd, keys.lease(p))).owner, "pod-a");
    }
    assert(masters.size > 1, "8 partitions on more than one master");
  },
});
